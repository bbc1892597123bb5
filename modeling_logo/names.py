"""Names that the package shares with the command lines around it: the losses and miners `build_loss` and
`build_miner` know (`losses`), the runtimes (`embedder`), and the files of a saved gallery (`few_shot`).

This file holds plain values and imports nothing. The command lines (`train.py`, `logo-detect`, `logo-gallery`) check
their arguments against these names before anything heavy is imported, so they read this file without importing the
package, whose `__init__` imports torch and transformers to register the models (`logo_commands.checks.hub_names`);
`tests/test_package_imports.py` checks that it stays free of imports.
"""

#: The losses of `modeling_logo.losses.build_loss`, by name.
LOSSES = ("triplet", "contrastive", "contrastive-cosine", "multi-similarity", "proxy-anchor", "normalized-softmax")
#: Losses whose parameters (one vector per training brand) the optimizer trains; they need `num_classes`.
CLASS_PROXY_LOSSES = ("proxy-anchor", "normalized-softmax")
#: The miners of `modeling_logo.losses.build_miner`, by name.
MINERS = ("none", "semi-hard", "hard", "multi-similarity", "collator")
#: The miner each loss trains with unless another is asked for.
DEFAULT_MINERS = {
    "triplet": "semi-hard",
    "contrastive": "none",
    "contrastive-cosine": "none",
    "multi-similarity": "multi-similarity",
    "proxy-anchor": "none",
    "normalized-softmax": "none",
}

#: What can run the embedder and the localiser (`embedder.Runtime` says what each does); the int8 one needs
#: calibration images, so a command line without them offers `RUNTIMES_WITHOUT_CALIBRATION`.
RUNTIMES = ("auto", "torch", "onnxruntime", "onnxruntime-int8")
INT8_RUNTIME = "onnxruntime-int8"
RUNTIMES_WITHOUT_CALIBRATION = tuple(name for name in RUNTIMES if name != INT8_RUNTIME)

#: The files `LogoGallery.save` writes into its folder: the brands and settings, and the shots' embeddings.
GALLERY_CONFIG_NAME = "gallery.json"
GALLERY_WEIGHTS_NAME = "gallery.safetensors"

__all__ = [
    "CLASS_PROXY_LOSSES",
    "DEFAULT_MINERS",
    "GALLERY_CONFIG_NAME",
    "GALLERY_WEIGHTS_NAME",
    "INT8_RUNTIME",
    "LOSSES",
    "MINERS",
    "RUNTIMES",
    "RUNTIMES_WITHOUT_CALIBRATION",
]
