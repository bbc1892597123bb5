"""The `logo-detect` and `logo-gallery` commands (`detect`, `gallery`), and what every command line of the
repository checks before it imports the models' libraries (`checks`).

Each command parses and checks its arguments first, importing neither torch nor transformers nor `modeling_logo`
(whose `__init__` imports both to register the models with the Auto classes): `--help` and a mistake in the command
line (one line on stderr, exit status 2) come back at once, and only a right command line pays the 15-25 s of those
imports. `modeling_logo` does not import this package.
"""
