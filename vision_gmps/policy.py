"""Convolutional Gaussian image policy, evaluable with an explicit parameter dict.

    image -> conv layers -> spatial softmax (2 coordinates per channel)
          -> concat [keypoints, proprio, bias-transform] -> MLP -> action mean
    log-std: a state-independent vector.

Optional per-episode exploration (``offset_log_std``): each sampled episode draws one action
offset z ~ N(action_offset, exp(offset_log_std)^2) and acts with mean + z at every step, so
its exploration is consistent over time (a constant drift that carries the block somewhere
else), where per-step noise averages out. The episode's log-density then includes log N(z),
whose score (z - action_offset) / sigma^2 times the return is a low-variance signal of which
direction paid off: a policy-gradient step on ``action_offset`` moves the whole trajectory.
This is MAESN's latent exploration (Gupta et al. 2018) with the latent added at the output.
Deterministic evaluation uses z = action_offset.

``latent_log_std`` puts the latent at the head's *input* instead, as MAESN does: each sampled
episode draws z ~ N(bias_transform, exp(latent_log_std)^2) and feeds z in place of the bias
transform for the whole episode. Why both: a closed-loop policy corrects an output offset (under
offsets of std 0.135 the scripted door expert's final angle varies by 0.4 degrees, sd;
benchmarks/exploration_reach.py), while an input latent can move where the policy *means* to
go, once the head has learned to read it (BC pre-training gives each training task its own
latent, ``MetaTrainer.pretrain``). One of the two at a time.

Every forward takes ``params`` (a dict name -> tensor, as ``named_parameters``):
the inner loop evaluates the same module at adapted parameters with
``torch.func.functional_call`` instead of copying modules. The encoder is kept
separate from the head so that, when only the head adapts (the default), the
conv features of a batch are computed once and shared by every task's adapted
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]
# Images per encoder call in ``encode_pixels`` on the CPU. A meta-iteration's 12,000 rollout images
# in one conv call overflow the CPU caches: forward plus backward of the encoder in chunks of 1,000
# took 0.39 s instead of 0.56 s at push_cpu sizes, a whole outer step 1.28x less time
# (benchmarks/outer_step.py). Results differ by float rounding only (the keypoints were bit-for-bit
# the same at those sizes; weight gradients sum in another order). 0: one call. A GPU gets one call.
ENCODE_CHUNK = 1000


@dataclass
class PolicySpec:
    """Everything that fixes the parameter shapes; stored in checkpoints and checked on load."""

    image_shape: tuple[int, int, int]
    proprio_dim: int
    action_dim: int
    conv_channels: tuple[int, ...] = (16, 16, 16)
    conv_strides: tuple[int, ...] = (2, 1, 1)
    kernel_size: int = 3
    hidden_sizes: tuple[int, ...] = (100, 100)
    bias_transform_dim: int = 4
    init_log_std: float = -0.5
    adapt: tuple[str, ...] = field(default=("head", "bias_transform"))
    # Per-episode exploration: None = off; else the initial log-std of an action offset drawn once
    # per episode (see ConvGaussianPolicy docstring).
    offset_log_std: float | None = None
    # Per-episode latent on the bias transform: None = off; else the initial log-std of the latent.
    latent_log_std: float | None = None

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict) -> "PolicySpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


class SpatialSoftmax(nn.Module):
    """Expected (x, y) image position of each channel's softmax: 2C keypoints (Levine et al. 2016)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("pos_x", xs.reshape(-1), persistent=False)
        self.register_buffer("pos_y", ys.reshape(-1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        attention = torch.softmax(x.reshape(b, c, h * w), dim=-1)
        pos_x = attention @ self.pos_x.to(x.dtype)
        pos_y = attention @ self.pos_y.to(x.dtype)
        return torch.cat([pos_x, pos_y], dim=-1)


class ConvGaussianPolicy(nn.Module):
    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        if spec.offset_log_std is not None and spec.latent_log_std is not None:
            raise ValueError("policy.offset_log_std and policy.latent_log_std are both set; per-episode exploration "
                             "is either at the output (offset) or at the input (latent): set one of them to null")
        if len(spec.conv_strides) != len(spec.conv_channels):
            raise ValueError(
                f"policy.conv_strides has {len(spec.conv_strides)} entries but conv_channels has "
                f"{len(spec.conv_channels)}; give one stride per conv layer"
            )
        self.spec = spec
        height, width, channels = spec.image_shape
        layers: list[nn.Module] = []
        for out, stride in zip(spec.conv_channels, spec.conv_strides):
            layers += [nn.Conv2d(channels, out, spec.kernel_size, stride, padding=spec.kernel_size // 2), nn.ReLU()]
            channels = out
        self.encoder = nn.Sequential(*layers)
        with torch.no_grad():
            _, _, fh, fw = self.encoder(torch.zeros(1, spec.image_shape[2], height, width)).shape
        self.keypoints = SpatialSoftmax(fh, fw)
        # Bias transformation (Finn et al. 2017): a learned input vector that lets a
        # gradient step on the head shift its output independently of the features.
        self.bias_transform = nn.Parameter(torch.zeros(spec.bias_transform_dim))
        sizes = [2 * channels + spec.proprio_dim + spec.bias_transform_dim, *spec.hidden_sizes]
        head: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            head += [nn.Linear(a, b), nn.ReLU()]
        head.append(nn.Linear(sizes[-1], spec.action_dim))
        self.head = nn.Sequential(*head)
        with torch.no_grad():  # small initial actions: start near "stand still"
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()
        self.log_std = nn.Parameter(torch.full((spec.action_dim,), float(spec.init_log_std)))
        if spec.offset_log_std is not None:
            self.action_offset = nn.Parameter(torch.zeros(spec.action_dim))
            self.offset_log_std = nn.Parameter(torch.full((spec.action_dim,), float(spec.offset_log_std)))
        if spec.latent_log_std is not None:
            self.latent_log_std = nn.Parameter(torch.full((spec.bias_transform_dim,), float(spec.latent_log_std)))
        self.adapted_names = self._select(spec.adapt)

    def _select(self, prefixes: Sequence[str]) -> list[str]:
        names = [n for n, _ in self.named_parameters()]
        unknown = [p for p in prefixes if not any(_matches(n, p) for n in names)]
        if unknown:
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"policy.adapt names {unknown} match no parameter; choose prefixes among {tops}")
        return [n for n in names if any(_matches(n, p) for p in prefixes)]

    @property
    def encoder_adapted(self) -> bool:
        return any(n.startswith("encoder.") for n in self.adapted_names)

    def params(self) -> Params:
        return dict(self.named_parameters())

    def encode(self, image: Tensor, params: Params) -> Tensor:
        """uint8 [B,H,W,3] images -> [B, 2C] keypoints."""
        return self.encode_pixels(self.pixels(image), params)

    def pixels(self, image: Tensor) -> Tensor:
        """uint8 [B,H,W,3] images -> the encoder's float input [B,3,H,W], in [-0.5, 0.5].

        Separate from ``encode`` so that a batch evaluated at many parameter values (one
        meta-iteration's rollouts, at each of its outer steps) is converted once: the conversion
        is ~1/5 of an outer step's time at push_cpu sizes (benchmarks/sampler_speed.md).
        """
        return image.permute(0, 3, 1, 2).to(self.log_std.dtype) / 255.0 - 0.5

    def encode_pixels(self, pixels: Tensor, params: Params) -> Tensor:
        """``pixels`` (from ``pixels``) -> [B, 2C] keypoints, ``ENCODE_CHUNK`` images per conv call."""
        encoder_params = {k[len("encoder.") :]: v for k, v in params.items() if k.startswith("encoder.")}
        chunks = pixels.split(ENCODE_CHUNK) if ENCODE_CHUNK and pixels.device.type == "cpu" else (pixels,)
        keypoints = [self.keypoints(functional_call(self.encoder, encoder_params, (chunk,))) for chunk in chunks]
        return keypoints[0] if len(keypoints) == 1 else torch.cat(keypoints)

    @property
    def has_offset(self) -> bool:
        """Per-episode exploration at the output: an action offset."""
        return self.spec.offset_log_std is not None

    @property
    def has_latent(self) -> bool:
        """Per-episode exploration at the input: a latent in place of the bias transform."""
        return self.spec.latent_log_std is not None

    @property
    def has_episode_noise(self) -> bool:
        """Whether sampled episodes each draw one vector (offset or latent) before their first step."""
        return self.has_offset or self.has_latent

    def episode_noise_distribution(self, params: Params) -> tuple[Tensor, Tensor]:
        """(mean, log-std) of the per-episode vector: (action_offset, offset_log_std) or (bias_transform, latent_log_std)."""
        if self.has_latent:
            return params["bias_transform"], params["latent_log_std"]
        return params["action_offset"], params["offset_log_std"]

    @property
    def output_layer(self) -> str:
        """Name prefix of the head's last linear layer (the action mean is its affine map of ``head_hidden``)."""
        return f"head.{len(self.head) - 1}"

    def head_hidden(self, features: Tensor, proprio: Tensor, params: Params) -> Tensor:
        """The output layer's input (deterministic policy), for steps that need the mean's features in closed form."""
        x = torch.cat([features, proprio.to(features.dtype),
                       params["bias_transform"].expand(features.shape[0], -1).to(features.dtype)], dim=-1)
        hidden = self.head[:-1]  # slicing keeps the layers' names ("0.weight", "2.weight", ...)
        return functional_call(hidden, {k[len("head."):]: v for k, v in params.items()
                                        if k.startswith("head.") and not k.startswith(self.output_layer + ".")}, (x,))

    def head_mean(self, features: Tensor, proprio: Tensor, params: Params, offsets: Tensor | None = None) -> Tensor:
        """Action mean; ``offsets`` are the sampled per-episode vectors, [B, A] offsets or [B, D] latents
        (default: their mean, i.e. the deterministic policy)."""
        latent = offsets if self.has_latent and offsets is not None else params["bias_transform"].expand(features.shape[0], -1)
        x = torch.cat([features, proprio.to(features.dtype), latent.to(features.dtype)], dim=-1)
        head_params = {k[len("head.") :]: v for k, v in params.items() if k.startswith("head.")}
        mean = functional_call(self.head, head_params, (x,))
        if not self.has_offset:
            return mean
        return mean + (offsets if offsets is not None else params["action_offset"])

    def offset_log_prob(self, offsets: Tensor, params: Params) -> Tensor:
        """log-density of the episodes' sampled vectors under ``episode_noise_distribution``, summed over dimensions."""
        mean, log_std = self.episode_noise_distribution(params)
        return self.log_prob(mean.expand_as(offsets), log_std, offsets)

    def mean(self, image: Tensor, proprio: Tensor, params: Params | None = None) -> Tensor:
        params = self.params() if params is None else params
        return self.head_mean(self.encode(image, params), proprio, params)

    def forward(self, image: Tensor, proprio: Tensor) -> Tensor:
        return self.mean(image, proprio)

    @staticmethod
    def log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
        """Diagonal Gaussian log-density, summed over action dimensions."""
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=mean.dtype))).sum(-1)


class StepSizes(nn.Module):
    """One learned step-size tensor per adapted parameter, the same shape as it (Meta-SGD style)."""

    def __init__(
        self, policy: ConvGaussianPolicy, init: float, learnable: bool = True, by_prefix: Mapping[str, float] | None = None
    ) -> None:
        super().__init__()
        named = dict(policy.named_parameters())
        self.names = list(policy.adapted_names)
        self.by_prefix = dict(by_prefix or {})
        unknown = [p for p in self.by_prefix if not any(_matches(n, p) for n in self.names)]
        if unknown:
            raise ValueError(f"algo.inner_lr_by_param names {unknown}, which match no adapted parameter {self.names}")
        self.values = nn.ParameterList(
            [nn.Parameter(torch.full_like(named[n], self.initial(n, init)), requires_grad=learnable) for n in self.names]
        )

    def initial(self, name: str, default: float) -> float:
        """``default``, unless a ``by_prefix`` entry names this parameter (parameters on other scales)."""
        return float(next((v for p, v in self.by_prefix.items() if _matches(name, p)), default))

    def as_dict(self, scale: float = 1.0) -> Params:
        """The learned step sizes; ``scale`` multiplies them at meta-test (``adapt.learned_step_scale``)."""
        return dict(zip(self.names, self.values)) if scale == 1.0 else {n: v * scale for n, v in zip(self.names, self.values)}

    def fixed(self, value: float) -> Params:
        """Constant step sizes (the "fixed" ablation at test time, or a baseline with no learned rates)."""
        return {n: torch.full_like(v, self.initial(n, value)) for n, v in zip(self.names, self.values)}


def _matches(name: str, prefix: str) -> bool:
    """A parameter name matches a prefix that names it or one of its parent modules."""
    return name == prefix or name.startswith(prefix + ".")


def build_policy(image_shape: Sequence[int], proprio_dim: int, action_dim: int, cfg) -> ConvGaussianPolicy:
    """Build from a hydra ``policy`` config node (or any mapping with the same keys)."""
    spec = PolicySpec(
        image_shape=tuple(int(x) for x in image_shape),
        proprio_dim=int(proprio_dim),
        action_dim=int(action_dim),
        conv_channels=tuple(cfg["conv_channels"]),
        conv_strides=tuple(cfg["conv_strides"]),
        kernel_size=int(cfg["kernel_size"]),
        hidden_sizes=tuple(cfg["hidden_sizes"]),
        bias_transform_dim=int(cfg["bias_transform_dim"]),
        init_log_std=float(cfg["init_log_std"]),
        adapt=tuple(cfg["adapt"]),
        offset_log_std=None if cfg.get("offset_log_std") is None else float(cfg["offset_log_std"]),
        latent_log_std=None if cfg.get("latent_log_std") is None else float(cfg["latent_log_std"]),
    )
    return ConvGaussianPolicy(spec)
