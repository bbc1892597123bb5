"""transformers' own conformance tests, from the installed release, run against the logo model.

`ModelTesterMixin`, `ConfigTester` and `ImageProcessingTestMixin` are what every model in transformers is tested
with. They are not part of the installed package, only of the release's source distribution, so this module fetches
them at test time: `pip download transformers==<installed version> --no-binary :all:` (a few MB, through the same
package index as every other install), unpacked once into `.pytest_cache/d/transformers-release-tests/<version>`
(or `$TRANSFORMERS_RELEASE_TESTS_CACHE`) and reused by later runs. The tests are set up the way transformers sets up
ResNet (`tests/models/resnet/test_modeling_resnet.py`): a tiny random model, the tests that do not apply to a
convolutional network without attention, embeddings or generation switched off with the mixins' own flags or
skipped with the reason.

The source distribution ships `tests/*.py` but not the sub-packages three of them import. They are replaced by
stand-ins written next to them (`write_stand_ins`): `ExportTesterMixin` (the `torch.export` tests; the model goes
through `torch.export` in tests/test_onnx.py, whose dynamo exporter is built on it), `GenerationTesterMixin` (only used to check that a model that cannot generate does not
inherit it), `config_common_kwargs` (the release's common `PreTrainedConfig` arguments, each with a value other than
its default; `test_config_common_kwargs_cover_the_release` checks the list against the installed release) and
`url_to_local_path` (fixture images of other models' tests, never used here).
"""

import inspect
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import unittest
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel, LogoImageProcessor
from modeling_logo.losses import build_loss


PACKAGE = "transformers_release_tests"
CACHE = Path(
    os.environ.get("TRANSFORMERS_RELEASE_TESTS_CACHE")
    or Path(__file__).resolve().parents[1] / ".pytest_cache" / "d" / "transformers-release-tests"
)
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_image_processing_common.py")

# Everything `PreTrainedConfig.__init__` of this release sets, with a value other than its default.
CONFIG_COMMON_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["LogoEmbeddingModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}

STAND_INS = {
    "exporters/test_export.py": '''
        class ExportTesterMixin:
            """Stand-in: the release's torch.export tests are not in its source distribution."""
        ''',
    "generation/test_utils.py": '''
        class GenerationTesterMixin:
            """Stand-in: only `issubclass` checks use it here (the logo model cannot generate)."""
        ''',
    "utils/test_configuration_utils.py": f"config_common_kwargs = {CONFIG_COMMON_KWARGS!r}\n",
    # test_image_processing_common.py appends `<its parent>/../utils` to sys.path for this module.
    "../utils/fetch_hub_objects_for_ci.py": """
        def url_to_local_path(url, return_url_if_not_found=True):
            return url
        """,
}


def write_stand_ins(package: Path) -> None:
    for name in ("", "exporters", "generation", "utils"):
        (package / name / "__init__.py").parent.mkdir(parents=True, exist_ok=True)
        (package / name / "__init__.py").touch()
    for name, text in STAND_INS.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def fetch_release_tests(version: str = transformers.__version__) -> Path:
    """The directory holding the `transformers_release_tests` package: the release's `tests/*.py` and the stand-ins.

    Raises:
        `RuntimeError`: the source distribution could not be downloaded (the message says why).
    """
    root = CACHE / version
    if all((root / PACKAGE / name).is_file() for name in COMMON_FILES):
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        scratch = Path(scratch)
        command = [sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-deps", "--no-binary"]
        command += [":all:", "--disable-pip-version-check", "--quiet", "-d", str(scratch / "sdist")]
        # Without build isolation pip reads the sdist's metadata with the installed setuptools (14 s instead of 55 s).
        for extra in (["--no-build-isolation"], []):
            try:
                result = subprocess.run(
                    command + extra, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300
                )
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"`{' '.join(command)}` took more than 5 minutes.") from None
            if result.returncode == 0:
                break
        else:
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{result.stderr[-2000:]}")
        (archive,) = (scratch / "sdist").glob("transformers-*.tar.gz")
        package = scratch / "release" / PACKAGE
        package.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py") and member.isfile():
                    (package / parts[2]).write_bytes(tar.extractfile(member).read())
        missing = [name for name in COMMON_FILES if not (package / name).is_file()]
        if missing:
            raise RuntimeError(
                f"The transformers {version} source distribution has no tests/{', tests/'.join(missing)}."
            )
        write_stand_ins(package)
        if not all((root / PACKAGE / name).is_file() for name in COMMON_FILES):  # else another process was quicker
            shutil.rmtree(root, ignore_errors=True)  # what an interrupted run left
            os.replace(scratch / "release", root)
    return root


try:
    sys.path.append(str(fetch_release_tests()))
except RuntimeError as error:
    pytest.skip(
        f"transformers {transformers.__version__}'s own tests could not be fetched: {error}", allow_module_level=True
    )

# Their marks (flash_attn_test, torch_compile_test, ...) are registered by transformers' conftest.py, not here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from transformers_release_tests.test_configuration_common import ConfigTester
    from transformers_release_tests.test_image_processing_common import ImageProcessingTester, ImageProcessingTestMixin
    from transformers_release_tests.test_modeling_common import ModelTesterMixin, floats_tensor


class LogoEmbeddingModelTester:
    def __init__(self, parent, batch_size=3, image_size=32, hidden_size=24, embedding_size=16, is_training=True):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = 3
        self.hidden_size = hidden_size
        self.embedding_size = embedding_size
        self.is_training = is_training
        self.stem_channels = 64  # timm's ResNet stem, whatever the stage widths
        self.hidden_sizes = [16, 32, 64, 128]  # the "resnet-tiny" preset's stage widths
        self.num_stages = len(self.hidden_sizes)

    def get_config(self):
        return LogoEmbeddingConfig(
            backbone="resnet-tiny",
            image_size=self.image_size,
            hidden_size=self.hidden_size,
            embedding_size=self.embedding_size,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), pixel_values

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


class LogoEmbeddingModelTest(ModelTesterMixin, unittest.TestCase):
    """`ModelTesterMixin` as `ResNetModelTest` uses it, plus the initialisation of missing weights, which models
    added before 2023 opt into (`test_can_init_all_missing_weights_before_2023`)."""

    all_model_classes = (LogoEmbeddingModel,)
    test_resize_embeddings = False
    has_attentions = False
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = LogoEmbeddingModelTester(self)
        self.config_tester = ConfigTester(
            self,
            config_class=LogoEmbeddingConfig,
            has_text_modality=False,
            common_properties=["hidden_size", "embedding_size", "image_size"],
            backbone="resnet-tiny",
            hidden_size=24,
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="A convolutional network: no input or output token embeddings to get or set")
    def test_model_get_set_embeddings(self):
        pass

    def test_forward_signature(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        arg_names = list(inspect.signature(LogoEmbeddingModel(config).forward).parameters)
        self.assertListEqual(arg_names[:1], ["pixel_values"])

    def test_model(self):
        config, pixel_values = self.model_tester.prepare_config_and_inputs()
        model = LogoEmbeddingModel(config).eval()
        with torch.no_grad():
            output = model(pixel_values)
        tester = self.model_tester
        self.assertEqual(output.embeddings.shape, (tester.batch_size, tester.embedding_size))
        torch.testing.assert_close(output.embeddings.norm(dim=-1), torch.ones(tester.batch_size))
        side = tester.image_size // 32
        self.assertEqual(output.last_hidden_state.shape, (tester.batch_size, tester.hidden_sizes[-1], side, side))
        self.assertIsNone(output.hidden_states)

    def test_initialization(self):
        """As `ResNetModelTest.test_initialization`, with timm's zero weight in each residual block's last BatchNorm."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = LogoEmbeddingModel(config)
        last_norms = {
            id(block.bn2)
            for stage in ("layer1", "layer2", "layer3", "layer4")
            for block in getattr(model.backbone, stage)
        }
        for name, module in model.named_modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                self.assertTrue(torch.all(module.weight == (0 if id(module) in last_norms else 1)), name)
                self.assertTrue(torch.all(module.bias == 0), name)
                self.assertTrue(torch.all(module.running_mean == 0) and torch.all(module.running_var == 1), name)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                self.assertAlmostEqual(
                    module.weight.std().item(), (2 / fan_out) ** 0.5, delta=0.35 * (2 / fan_out) ** 0.5
                )

    def test_hidden_states_output(self):
        """As `ResNetModelTest.test_hidden_states_output`: the stem's feature map and each stage's."""
        tester = self.model_tester

        def check_hidden_states_output(inputs_dict, config):
            model = LogoEmbeddingModel(config).eval()
            with torch.no_grad():
                outputs = model(**inputs_dict)
            hidden_states = outputs.hidden_states
            self.assertEqual(len(hidden_states), tester.num_stages + 1)
            shapes = [tuple(hidden_state.shape) for hidden_state in hidden_states]
            sides = [tester.image_size // 4, tester.image_size // 4, tester.image_size // 8, tester.image_size // 16]
            sides.append(tester.image_size // 32)
            channels = [tester.stem_channels, *tester.hidden_sizes]
            self.assertListEqual(shapes, [(tester.batch_size, c, s, s) for c, s in zip(channels, sides)])
            self.assertIs(hidden_states[-1], outputs.last_hidden_state)
            with torch.no_grad():  # the same embeddings as without the feature maps
                torch.testing.assert_close(
                    model(inputs_dict["pixel_values"], output_hidden_states=False).embeddings, outputs.embeddings
                )

        config, inputs_dict = tester.prepare_config_and_inputs_for_common()
        inputs_dict["output_hidden_states"] = True
        check_hidden_states_output(inputs_dict, config)
        # check that output_hidden_states also work using config
        del inputs_dict["output_hidden_states"]
        config.output_hidden_states = True
        check_hidden_states_output(inputs_dict, config)

    def test_training(self):
        """The mixin's version needs a `loss` output; the model has none (the metric-learning losses of
        `modeling_logo.losses` take its embeddings and the brand labels). Train one step with one of them instead."""
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        model = LogoEmbeddingModel(config).train()
        labels = torch.tensor([0, 0, 1])
        loss = build_loss("contrastive")(model(**inputs_dict).embeddings, labels)
        self.assertGreater(loss.item(), 0)
        loss.backward()
        missing = [name for name, param in model.named_parameters() if param.requires_grad and param.grad is None]
        self.assertEqual(missing, [])


class LogoImageProcessingTester(ImageProcessingTester):
    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 20, "width": 20})
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])  # not the defaults, so that saving and loading must keep them
        kwargs.setdefault("image_std", [0.25, 0.25, 0.25])
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self):
        # transformers finds a model's processors by its folder in tests/models/; the logo model has one backend.
        return {"torchvision": LogoImageProcessor}


class LogoImageProcessingTest(ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = LogoImageProcessingTester


def test_config_common_kwargs_cover_the_release():
    """The stand-in `config_common_kwargs` sets every attribute `PreTrainedConfig` of the installed release has (but
    `is_encoder_decoder`, as transformers' own list), each to a value other than its default."""
    base = transformers.PreTrainedConfig()
    attributes = {name.removeprefix("_") for name in vars(base) if name == "_output_attentions" or name[0] != "_"}
    attributes -= {"transformers_version", "is_encoder_decoder"}
    assert attributes == set(CONFIG_COMMON_KWARGS), "update CONFIG_COMMON_KWARGS for this transformers release"
    assert [name for name, value in CONFIG_COMMON_KWARGS.items() if getattr(base, name) == value] == []
