"""The tasks, one module each, engine-neutral (they reach an engine through rnnkit.engines): lm (language
modelling: train, evaluate, generate) and classify (text classification, with baselines.py's TF-IDF baseline
and presets.py's settings)."""
