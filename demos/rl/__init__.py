"""RL experts on privileged state (stable-baselines3 SAC, optional HER) and the expert zoo they are saved in.

``demos.rl.train.train_zoo`` trains a zoo (``vgmps experts train``); ``demos.rl.zoo.ZooExpert`` is a zoo
behind the scripted-expert interface, for DAgger labels and demo collection. Importing this package
does not import stable-baselines3: only training needs it (``pip install '.[rl]'``).
"""
