import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling_logo import BrandMatch, LogoEmbedder, LogoEmbeddingModel, LogoGallery

from .conftest import make_logo_images


BRANDS = ["Acme", "Café & Co's", "Ünïcödé 株式会社", "AT&T", "dots.and spaces"]


@pytest.fixture
def gallery(tiny_model):
    return LogoGallery(LogoEmbedder(tiny_model), batch_size=4)


@pytest.fixture
def shot_images():
    return make_logo_images(len(BRANDS) * 2, seed=3)


def unit(vectors) -> torch.Tensor:
    return F.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=-1)


def test_an_image_used_as_a_shot_is_its_own_top_1(gallery, shot_images):
    for brand, image in zip(BRANDS, shot_images):
        gallery.add_brand(brand, image)
    for brand, image in zip(BRANDS, shot_images):
        best = gallery.search(image, top_k=3)[0]
        assert best.brand == brand
        assert best.score == pytest.approx(1.0, abs=1e-5)
    results = gallery.search(shot_images[: len(BRANDS)], top_k=2)
    assert [matches[0].brand for matches in results] == BRANDS
    assert all(len(matches) == 2 and matches[0].score >= matches[1].score for matches in results)


def test_prototype_is_the_renormalised_mean_of_unit_shots(gallery, shot_images):
    gallery.add_brand("Acme", shot_images[:3])
    shots = gallery.embed(shot_images[:3])
    torch.testing.assert_close(gallery.shots("Acme"), unit(shots))
    torch.testing.assert_close(gallery.prototype("Acme"), unit(unit(shots).mean(0)))
    assert gallery.prototype("Acme").norm().item() == pytest.approx(1.0)


def test_batched_embedding_matches_one_by_one(gallery, shot_images):
    batched = gallery.embed(shot_images, progress=True)  # batch_size=4 over 10 images, with a progress bar
    single = torch.cat([gallery.embed([image]) for image in shot_images])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_unknown_brands_are_rejected_below_the_threshold():
    rng = np.random.default_rng(0)
    known = unit(rng.normal(size=(4, 128)))
    gallery = LogoGallery()
    for index, vector in enumerate(known):
        gallery.add_brand_embeddings(f"brand {index}", vector)
    stranger = unit(rng.normal(size=128))
    assert gallery.search(stranger, top_k=1)[0].score < 0.5
    assert gallery.predict(stranger, threshold=0.5) is None
    assert gallery.predict(known[2], threshold=0.5) == "brand 2"
    assert gallery.predict(torch.stack([known[1], stranger]), threshold=0.5) == ["brand 1", None]
    # a lower threshold accepts the nearest brand
    assert gallery.predict(stranger, threshold=-1.0) == gallery.search(stranger, top_k=1)[0].brand


def test_threshold_defaults_come_from_the_gallery_then_the_model(tiny_model, shot_images):
    gallery = LogoGallery(LogoEmbedder(tiny_model))
    gallery.add_brand("Acme", shot_images[0])
    with pytest.raises(ValueError, match="No threshold"):
        gallery.predict(shot_images[1])
    tiny_model.config.similarity_threshold = 0.9999
    assert gallery.predict(shot_images[0]) == "Acme"
    assert gallery.predict(shot_images[1]) is None
    gallery.threshold = -1.0
    assert gallery.predict(shot_images[1]) == "Acme"


def test_adding_and_removing_shots_and_brands(gallery, shot_images):
    gallery.add_brand("Acme", shot_images[0], metadata={"source": "upload"})
    gallery.add_brand("Globex", shot_images[1:3])
    with pytest.raises(ValueError, match="already in the gallery"):
        gallery.add_brand("Acme", shot_images[3])
    gallery.add_shots("Acme", shot_images[3:5])
    assert len(gallery.shots("Acme")) == 3
    globex_before = gallery.shots("Globex")

    gallery.add_shot_embeddings("Acme", gallery.embed(shot_images[5:6]) * 2)  # normalised
    torch.testing.assert_close(gallery.shots("Acme")[-1], unit(gallery.embed(shot_images[5:6]))[0])
    gallery.remove_shot("Acme", -1)
    gallery.remove_shot("Acme", 0)
    torch.testing.assert_close(gallery.shots("Acme"), gallery.embed(shot_images[3:5]))
    torch.testing.assert_close(gallery.shots("Globex"), globex_before)  # other brands untouched

    gallery.rename_brand("Acme", "Acme Corp")
    assert gallery.brands == ["Acme Corp", "Globex"] and gallery.metadata("Acme Corp") == {"source": "upload"}
    gallery.add_brand("Globex", shot_images[6], overwrite=True)
    assert len(gallery.shots("Globex")) == 1
    gallery.add_brand_embeddings("Initech", gallery.embed(shot_images[7:9]).numpy(), metadata={"source": "vectors"})
    torch.testing.assert_close(gallery.shots("Initech"), unit(gallery.embed(shot_images[7:9])))
    with pytest.raises(ValueError, match="already in the gallery"):
        gallery.add_brand_embeddings("Initech", gallery.embed(shot_images[7:8]))
    gallery.remove_brand("Initech")
    gallery.remove_brand("Acme Corp")
    assert gallery.brands == ["Globex"] and "Acme Corp" not in gallery
    gallery.remove_shot("Globex", 0)  # its last shot: the brand goes
    assert len(gallery) == 0
    with pytest.raises(KeyError, match="not in the gallery"):
        gallery.remove_brand("Initech")


def test_search_results_follow_gallery_changes(gallery, shot_images):
    gallery.add_brand("Acme", shot_images[0])
    gallery.add_brand("Globex", shot_images[1])
    assert gallery.search(shot_images[1], top_k=1)[0].brand == "Globex"
    gallery.remove_brand("Globex")
    assert gallery.search(shot_images[1], top_k=5) == [
        BrandMatch("Acme", pytest.approx(gallery.search(shot_images[1])[0].score))
    ]


def test_invalid_inputs_are_clear_errors(gallery, shot_images, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        gallery.search(shot_images[0])
    with pytest.raises(ValueError, match="non-empty string"):
        gallery.add_brand("  ", shot_images[0])
    with pytest.raises(ValueError, match="No images"):
        gallery.add_brand("Acme", [])
    gallery.add_brand("Acme", shot_images[0])
    with pytest.raises(ValueError, match="top_k"):
        gallery.search(shot_images[0], top_k=0)
    with pytest.raises(ValueError, match="size 64"):
        gallery.search(torch.ones(64))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable image"):
        gallery.search(tmp_path / "notes.txt")
    assert gallery.brands == ["Acme"]  # a bad query loses nothing
    with pytest.raises(ValueError, match="no model"):
        LogoGallery().add_brand("Acme", shot_images[0])
    # Shots are images for add_brand and add_shots, embeddings for add_brand_embeddings and add_shot_embeddings:
    # never guessed. The wrong kind is a TypeError that names the right method; nothing is added.
    vectors = gallery.embed(shot_images[1:3])
    for wrong in (vectors, vectors[0], vectors.numpy(), list(vectors), vectors.tolist(), vectors[0].tolist()):
        with pytest.raises(TypeError, match="add_brand_embeddings"):
            gallery.add_brand("Vectors", wrong)
        with pytest.raises(TypeError, match="add_shot_embeddings"):
            gallery.add_shots("Acme", wrong)
    for wrong in (shot_images[1], shot_images[1:3], tmp_path / "notes.txt", b"bytes", np.zeros((72, 96, 3))):
        with pytest.raises(TypeError, match=r"add_brand\(brand, images\)"):
            gallery.add_brand_embeddings("Images", wrong)
        with pytest.raises(TypeError, match=r"add_shots\(brand, images\)"):
            gallery.add_shot_embeddings("Acme", wrong)
    with pytest.raises(TypeError, match="add_brand"):
        gallery.add_brands({"Images": shot_images[1:3]})
    assert gallery.brands == ["Acme"] and len(gallery.shots("Acme")) == 1


def test_faiss_and_matmul_give_the_same_ranking():
    rng = np.random.default_rng(1)
    prototypes, queries = unit(rng.normal(size=(3000, 128))), unit(rng.normal(size=(200, 128)))
    galleries = {backend: LogoGallery(search_backend=backend) for backend in ("torch", "faiss")}
    for gallery in galleries.values():
        for index, vector in enumerate(prototypes):
            gallery.add_brand_embeddings(f"b{index}", vector)
    torch_results, faiss_results = (galleries[b].search(queries, top_k=10) for b in ("torch", "faiss"))
    assert [[m.brand for m in row] for row in torch_results] == [[m.brand for m in row] for row in faiss_results]
    np.testing.assert_allclose(
        [[m.score for m in row] for row in torch_results], [[m.score for m in row] for row in faiss_results], atol=1e-5
    )
    exact = (queries @ prototypes.T).topk(10).indices
    assert [[m.brand for m in row] for row in torch_results] == [[f"b{i}" for i in row] for row in exact.tolist()]


def test_save_and_load_round_trip(gallery, shot_images, tmp_path, tiny_model):
    for index, brand in enumerate(BRANDS):
        gallery.add_brand(brand, shot_images[index : index + 1 + index % 2], metadata={"n": index, "note": brand})
    gallery.threshold = 0.37
    gallery.save(tmp_path / "gallery")
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == ["gallery.json", "gallery.safetensors"]

    loaded = LogoGallery.load(tmp_path / "gallery", LogoEmbedder(tiny_model))
    assert loaded.brands == BRANDS and loaded.threshold == 0.37
    for brand in BRANDS:
        torch.testing.assert_close(loaded.shots(brand), gallery.shots(brand), rtol=0, atol=0)
        torch.testing.assert_close(loaded.prototype(brand), gallery.prototype(brand))
        assert loaded.metadata(brand) == gallery.metadata(brand)
    assert loaded.search(shot_images, top_k=3) == gallery.search(shot_images, top_k=3)


def test_loading_with_another_model_is_refused(gallery, shot_images, tmp_path, tiny_config):
    gallery.add_brand("Acme", shot_images[0])
    gallery.save(tmp_path)
    torch.manual_seed(99)
    other = LogoEmbedder(LogoEmbeddingModel(tiny_config))
    with pytest.raises(ValueError, match="embedded by another model"):
        LogoGallery.load(tmp_path, other)
    assert LogoGallery.load(tmp_path, other, check_model=False).brands == ["Acme"]
    assert LogoGallery.load(tmp_path).brands == ["Acme"]  # embeddings only


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda d: (d / "gallery.json").write_text("{not json"), ValueError, "corrupt"),
        (
            lambda d: (d / "gallery.json").write_text(json.dumps({"format": "other", "brands": []})),
            ValueError,
            "format",
        ),
        (lambda d: (d / "gallery.safetensors").write_bytes(b"\x05\x00garbage"), ValueError, "corrupt"),
        (lambda d: (d / "gallery.safetensors").unlink(), FileNotFoundError, "not a gallery"),
        (
            lambda d: (d / "gallery.json").write_text(
                (d / "gallery.json").read_text().replace('"num_shots": 2', '"num_shots": 3')
            ),
            ValueError,
            "inconsistent",
        ),
    ],
    ids=["bad-json", "wrong-format", "bad-safetensors", "missing-file", "wrong-counts"],
)
def test_damaged_gallery_files_are_clear_errors(gallery, shot_images, tmp_path, damage, error, message):
    gallery.add_brand("Acme", shot_images[:2])
    gallery.save(tmp_path)
    damage(tmp_path)
    with pytest.raises(error, match=message):
        LogoGallery.load(tmp_path)


def test_from_pretrained_builds_a_working_gallery(saved_model_dir, shot_images):
    gallery = LogoGallery.from_pretrained(saved_model_dir, threshold=0.5)
    gallery.add_brand("Acme", shot_images[:2])
    gallery.add_brand("Globex", shot_images[2:4])
    assert gallery.predict(shot_images[2]) == "Globex"
    assert isinstance(gallery.embedder, LogoEmbedder) and gallery.image_processor.size.height == 64
    assert LogoGallery.from_pretrained(saved_model_dir, runtime="torch", batch_size=3).embedder.batch_size == 3


def test_the_embedder_encodes_like_sentence_transformers(saved_model_dir, shot_images):
    embedder = LogoEmbedder.from_pretrained(saved_model_dir, runtime="torch", batch_size=4)
    batch = embedder.encode(shot_images)  # 10 images in batches of 4
    assert batch.shape == (10, 128) and batch.dtype == torch.float32 and batch.device.type == "cpu"
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(10))
    one = embedder.encode(shot_images[3])  # one image: one vector
    assert one.shape == (128,)
    torch.testing.assert_close(one, batch[3], atol=1e-5, rtol=0)
    as_numpy = embedder.encode(iter(shot_images), batch_size=3, show_progress_bar=True, convert_to_numpy=True)
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, batch.numpy(), atol=1e-5, rtol=0)
    assert embedder.encode([]).shape == (0, 128)
    assert embedder.embedding_size == 128 and embedder.device.type == "cpu" and embedder.config.image_size == 64
    assert not embedder.model.training and embedder.prepare() == "torch"


def test_loaded_models_run_channels_last_with_the_same_embeddings(saved_model_dir, shot_images):
    """LogoEmbedder.from_pretrained picks the fastest correct CPU path (benchmarks/embedding_throughput.py);
    load_model_and_processor and embed_images, kept for callers that pass the pair, are the same code."""
    from modeling_logo.few_shot import embed_images, load_model_and_processor

    embedder = LogoEmbedder.from_pretrained(saved_model_dir, runtime="torch")
    assert embedder.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain = LogoEmbeddingModel.from_pretrained(saved_model_dir).eval()
    torch.testing.assert_close(
        embedder.encode(shot_images), embed_images(plain, embedder.image_processor, shot_images), atol=1e-5, rtol=0
    )
    model, processor = load_model_and_processor(saved_model_dir)
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert processor.to_dict() == embedder.image_processor.to_dict()
    torch.testing.assert_close(embed_images(model, processor, shot_images), embedder.encode(shot_images))


def test_the_saved_image_processor_is_used_and_only_a_model_without_one_gets_its_configs(tiny_model, tmp_path):
    from modeling_logo import LogoImageProcessor

    tiny_model.save_pretrained(tmp_path / "model-only")
    assert LogoEmbedder.from_pretrained(tmp_path / "model-only").image_processor.size.height == 64  # from the config
    tiny_model.save_pretrained(tmp_path / "with-processor")
    LogoImageProcessor(size={"height": 80, "width": 80}).save_pretrained(tmp_path / "with-processor")
    assert LogoEmbedder.from_pretrained(tmp_path / "with-processor").image_processor.size.height == 80
    (tmp_path / "with-processor" / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(OSError):  # a damaged processor is an error, not silently replaced by the config's
        LogoEmbedder.from_pretrained(tmp_path / "with-processor")


def test_galleries_embed_with_onnx_runtime_by_default_with_the_same_embeddings(saved_model_dir, shot_images):
    """runtime="auto" picks ONNX Runtime when the onnx extra is installed: same embeddings, exported once, cached
    under the model's fingerprint."""
    pytest.importorskip("onnxruntime")
    from modeling_logo.cache import cache_root
    from modeling_logo.few_shot import embed_images, embedding_function
    from modeling_logo.onnx import OnnxLogoEmbedder

    embedder = LogoEmbedder.from_pretrained(saved_model_dir)
    model, processor = embedder.model, embedder.image_processor
    gallery = LogoGallery(embedder)
    onnx_embeddings = gallery.embed(shot_images)
    assert embedder.prepare() == "onnxruntime" and isinstance(embedding_function(model), OnnxLogoEmbedder)
    assert any(embedder.fingerprint in path.name for path in (cache_root() / "onnx").iterdir())
    torch.testing.assert_close(onnx_embeddings, embed_images(model, processor, shot_images), atol=1e-4, rtol=0)
    # Another embedder of the same model shares the export; changed weights get a new one.
    assert LogoEmbedder(model, processor, runtime="onnxruntime").encode(shot_images[:1]).shape == (1, 128)
    shared = embedding_function(model)
    assert embedding_function(model) is shared
    with torch.no_grad():
        model.head.output.weight.mul_(-1)
        model.head.output.bias.mul_(-1)
    assert embedding_function(model) is not shared
    torch.testing.assert_close(
        LogoGallery(LogoEmbedder(model, processor)).embed(shot_images[:2]), -onnx_embeddings[:2], atol=1e-4, rtol=0
    )


def test_runtime_choices_are_checked(tiny_model, processor):
    from modeling_logo.few_shot import embedding_function

    with pytest.raises(ValueError, match="runtime must be one of"):
        LogoEmbedder(tiny_model, runtime="tensorrt")
    with pytest.raises(TypeError, match="embedder's"):  # the runtime is the embedder's, not the gallery's
        LogoGallery(LogoEmbedder(tiny_model), runtime="torch")
    with pytest.raises(ValueError, match="eval mode"):
        embedding_function(LogoEmbeddingModel(tiny_model.config).train(), "onnxruntime")
    # A model in training mode runs on torch under "auto": an export would freeze dropout and BatchNorm statistics.
    assert not hasattr(embedding_function(LogoEmbeddingModel(tiny_model.config).train()), "session")
    # The earlier call, a model and its processor, still works: wrapped in an embedder, with a warning.
    with pytest.warns(DeprecationWarning, match="LogoEmbedder"):
        gallery = LogoGallery(tiny_model, processor, runtime="torch", batch_size=2)
    assert gallery.embedder.model is tiny_model and gallery.runtime == "torch" and gallery.embedder.batch_size == 2


def test_one_fingerprint_for_the_same_weights_wherever_they_come_from(tiny_model, tmp_path, shot_images):
    from modeling_logo import model_fingerprint

    tiny_model.save_pretrained(tmp_path / "model")
    loaded = LogoEmbeddingModel.from_pretrained(tmp_path / "model")
    assert model_fingerprint(loaded) == model_fingerprint(tiny_model) == LogoEmbedder(tiny_model).fingerprint
    loaded.config.similarity_threshold = 0.7  # calibrating the threshold changes no embedding
    assert model_fingerprint(loaded) == model_fingerprint(tiny_model)
    with torch.no_grad():
        loaded.backbone.conv1.weight[0, 0, 0, 0] += 1e-3  # one weight of the backbone, not only the head's
    assert model_fingerprint(loaded) != model_fingerprint(tiny_model)
    gallery = LogoGallery(LogoEmbedder(tiny_model))
    gallery.add_brand("Acme", shot_images[0])
    gallery.save(tmp_path / "gallery")
    manifest = json.loads((tmp_path / "gallery" / "gallery.json").read_text())
    assert manifest["model_fingerprint"] == model_fingerprint(tiny_model)
    with pytest.raises(ValueError, match="embedded by another model"):
        LogoGallery.load(tmp_path / "gallery", LogoEmbedder(loaded))


def test_galleries_saved_with_the_earlier_head_fingerprint_still_load(tiny_model, tiny_config, tmp_path, shot_images):
    from modeling_logo.fingerprint import legacy_head_fingerprint

    gallery = LogoGallery(LogoEmbedder(tiny_model))
    gallery.add_brand("Acme", shot_images[0])
    gallery.save(tmp_path)
    manifest = json.loads((tmp_path / "gallery.json").read_text())
    manifest["model_fingerprint"] = legacy_head_fingerprint(tiny_model)  # as galleries were saved before
    assert len(manifest["model_fingerprint"]) == 16
    (tmp_path / "gallery.json").write_text(json.dumps(manifest))
    assert LogoGallery.load(tmp_path, LogoEmbedder(tiny_model)).brands == ["Acme"]
    torch.manual_seed(99)
    with pytest.raises(ValueError, match="embedded by another model"):
        LogoGallery.load(tmp_path, LogoEmbedder(LogoEmbeddingModel(tiny_config)))


def test_to_dict_and_from_dict_round_trip(gallery, shot_images, tiny_model, tiny_config):
    for index, brand in enumerate(BRANDS):
        gallery.add_brand(brand, shot_images[index : index + 1 + index % 2], metadata={"n": index, "note": brand})
    gallery.threshold = 0.37
    data = json.loads(json.dumps(gallery.to_dict()))  # plain JSON data
    assert data["model_fingerprint"] == gallery.embedder.fingerprint and data["embedding_size"] == 128
    restored = LogoGallery.from_dict(data, gallery.embedder)
    assert restored.brands == BRANDS and restored.threshold == 0.37
    for brand in BRANDS:
        torch.testing.assert_close(restored.shots(brand), gallery.shots(brand), rtol=0, atol=0)  # bit for bit
        torch.testing.assert_close(restored.prototype(brand), gallery.prototype(brand))
        assert restored.metadata(brand) == gallery.metadata(brand)
    assert restored.search(shot_images, top_k=3) == gallery.search(shot_images, top_k=3)
    assert restored.to_dict() == data
    assert LogoGallery.from_dict(data).brands == BRANDS  # embeddings only
    torch.manual_seed(99)
    with pytest.raises(ValueError, match="embedded by another model"):
        LogoGallery.from_dict(data, LogoEmbedder(LogoEmbeddingModel(tiny_config)))
    for damaged in ({}, {**data, "format": "other"}, {**data, "brands": [{"shots": []}]}, []):
        with pytest.raises(ValueError, match="Not a gallery"):
            LogoGallery.from_dict(damaged)
    assert LogoGallery().to_dict()["brands"] == [] and len(LogoGallery.from_dict(LogoGallery().to_dict())) == 0


def test_loading_normalises_only_shots_edited_off_the_unit_sphere(gallery, shot_images, tmp_path):
    from safetensors.torch import load_file, save_file

    gallery.add_brand("Acme", shot_images[:2])
    gallery.save(tmp_path)
    stored = load_file(tmp_path / "gallery.safetensors")
    save_file({"shots": stored["shots"] * 3}, tmp_path / "gallery.safetensors")
    torch.testing.assert_close(LogoGallery.load(tmp_path).shots("Acme"), gallery.shots("Acme"), atol=1e-6, rtol=0)


def test_add_brands_registers_many_brands_at_once_like_add_brand(shot_images, gallery):
    vectors = unit(torch.randn(12, 128))
    one_by_one = LogoGallery()
    for index, brand in enumerate(BRANDS):
        one_by_one.add_brand_embeddings(brand, vectors[index * 2 : index * 2 + 2], metadata={"n": index})
    at_once = LogoGallery()
    at_once.add_brands(
        {brand: vectors[i * 2 : i * 2 + 2].numpy() for i, brand in enumerate(BRANDS)},
        metadata={brand: {"n": i} for i, brand in enumerate(BRANDS)},
    )
    assert at_once.brands == one_by_one.brands
    for brand in BRANDS:
        torch.testing.assert_close(at_once.prototype(brand), one_by_one.prototype(brand))
        assert at_once.metadata(brand) == one_by_one.metadata(brand)
    matches, expected = at_once.search(vectors[11], top_k=2), one_by_one.search(vectors[11], top_k=2)
    assert [m.brand for m in matches] == [m.brand for m in expected]
    assert [m.score for m in matches] == pytest.approx([m.score for m in expected], abs=1e-6)
    at_once.add_brands({"Extra": vectors[10].tolist()})  # one shot as a plain list
    assert len(at_once.shots("Extra")) == 1
    with pytest.raises(ValueError, match="already in the gallery"):
        at_once.add_brands({"Acme": vectors[:1]})
    with pytest.raises(ValueError, match="size 128"):
        at_once.add_brands({"Small": torch.randn(2, 64)})
    with pytest.raises(ValueError, match="no shots"):
        at_once.add_brands({"Empty": np.zeros((0, 128))})
    assert "Small" not in at_once and "Empty" not in at_once  # a refused call adds nothing


def test_the_approximate_ivf_backend_finds_nearly_the_exact_top_10():
    rng = np.random.default_rng(2)
    centres = unit(rng.normal(size=(400, 128)))  # clustered like shots of brands, as real galleries are
    prototypes = unit(centres[rng.integers(0, 400, 8000)] + 0.05 * torch.as_tensor(rng.normal(size=(8000, 128))))
    queries = unit(prototypes[:100] + 0.05 * torch.as_tensor(rng.normal(size=(100, 128))))
    names = {f"b{i}": vector for i, vector in enumerate(prototypes)}
    exact, approximate = LogoGallery(search_backend="torch"), LogoGallery(search_backend="faiss-ivf", ivf_nprobe=8)
    for gallery in (exact, approximate):
        gallery.add_brands(names)
    exact_top, ivf_top = exact.search(queries, top_k=10), approximate.search(queries, top_k=10)
    import faiss

    assert isinstance(approximate._faiss_index, faiss.IndexIVFFlat) and approximate._faiss_index.nprobe == 8
    recall = np.mean([len({m.brand for m in a} & {m.brand for m in e}) / 10 for a, e in zip(ivf_top, exact_top)])
    assert recall > 0.9
    assert [row[0].brand for row in ivf_top] == [row[0].brand for row in exact_top]
    with pytest.raises(ValueError, match="search_backend must be one of"):
        LogoGallery(search_backend="annoy")


def svg_mark(colour: str, shape: str) -> str:
    body = '<circle cx="60" cy="40" r="35"' if shape == "circle" else '<rect x="20" y="10" width="80" height="60"'
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 80">{body} fill="{colour}"/></svg>'


def test_svg_logos_are_shots_and_queries_like_any_image(gallery, tmp_path):
    import resvg_py

    for name, colour, shape in (("acme", "#c01818", "circle"), ("bolt", "#102a80", "rect")):
        (tmp_path / f"{name}.svg").write_text(svg_mark(colour, shape))
        png = resvg_py.svg_to_bytes(svg_string=svg_mark(colour, shape), width=360, background="#ffffff")
        (tmp_path / f"{name}.png").write_bytes(bytes(png))  # the same mark exported as a PNG, at another size
    gallery.add_brand("Acme", tmp_path / "acme.svg")
    gallery.add_brand("Bolt", [(tmp_path / "bolt.svg").read_bytes()])  # bytes too
    svg_shot, png_export, other_mark = unit(
        gallery.embed([tmp_path / f for f in ("acme.svg", "acme.png", "bolt.png")])
    )
    same, different = float(svg_shot @ png_export), float(svg_shot @ other_mark)
    assert same > 0.99 and 1 - same < (1 - different) / 5, (same, different)  # random weights: all are close
    assert [gallery.search(tmp_path / f"{name}.png")[0].brand for name in ("acme", "bolt")] == ["Acme", "Bolt"]
    (tmp_path / "broken.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect')
    with pytest.raises(ValueError, match="broken.svg.*not a readable SVG image"):
        gallery.add_brand("Broken", [tmp_path / "acme.svg", tmp_path / "broken.svg"])
    assert gallery.brands == ["Acme", "Bolt"]  # a bad shot loses nothing


def clustered_split(brands: int, shots: int, seed: int):
    """An EmbeddedSplit of unit vectors clustered by brand, as calibrate_threshold takes."""
    from modeling_logo.evaluation import EmbeddedSplit

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(brands, 128))
    vectors = np.repeat(centres, shots, axis=0) + 0.8 * rng.normal(size=(brands * shots, 128))
    return EmbeddedSplit(unit(vectors).numpy(), np.repeat(np.arange(brands), shots))


def test_predict_and_detection_take_the_operating_point_calibrate_threshold_returns(gallery, shot_images):
    from modeling_logo.evaluation import OperatingPoint, calibrate_threshold

    point = calibrate_threshold(clustered_split(20, 6, seed=0), "precision@0.95")
    assert isinstance(point, OperatingPoint) and -1 <= point.threshold <= 1
    for brand, image in zip(BRANDS, shot_images):
        gallery.add_brand(brand, image)
    queries = shot_images[: len(BRANDS)] + make_logo_images(4, seed=11)
    assert gallery.predict(queries, threshold=point) == gallery.predict(queries, threshold=point.threshold)
    assert gallery.predict(shot_images[0], threshold=point) == BRANDS[0]  # its own shot: similarity 1
    boxes = [(0, 0, 48, 36), (40, 30, 96, 72)]
    assert gallery.name_boxes(shot_images[0], boxes, threshold=point) == gallery.name_boxes(
        shot_images[0], boxes, threshold=point.threshold
    )
    windows = gallery.detect(shot_images[0], threshold=point, method="windows")
    assert windows == gallery.detect(shot_images[0], threshold=point.threshold, method="windows")
    # As the gallery's default: the number is kept (and saved).
    gallery.threshold = point
    assert gallery.threshold == point.threshold and gallery.to_dict()["threshold"] == point.threshold
    assert LogoGallery(threshold=point).threshold == point.threshold


@pytest.mark.parametrize(
    ("threshold", "error", "message"),
    [
        (2, ValueError, r"threshold must be a cosine similarity in \[-1, 1\], got 2"),
        (-1.5, ValueError, r"in \[-1, 1\]"),
        (float("nan"), ValueError, r"in \[-1, 1\]"),
        ("0.5", TypeError, "threshold must be a cosine similarity .* got str '0.5'"),
        (True, TypeError, "got bool"),
        ([0.5], TypeError, "got list"),
    ],
)
def test_bad_thresholds_are_refused_everywhere(gallery, shot_images, threshold, error, message):
    gallery.add_brand("Acme", shot_images[0])
    calls = [
        lambda: gallery.predict(shot_images[1], threshold=threshold),
        lambda: gallery.name_boxes(shot_images[1], [(0, 0, 40, 40)], threshold=threshold),
        lambda: gallery.name_boxes(shot_images[1], [], threshold=threshold),  # even with nothing to name
        lambda: gallery.detect(shot_images[1], threshold=threshold, method="windows"),
        lambda: LogoGallery(threshold=threshold),
        lambda: setattr(gallery, "threshold", threshold),
    ]
    for call in calls:
        with pytest.raises(error, match=message):
            call()
    assert gallery.threshold is None


def test_brand_names_are_stripped_and_kept_in_one_unicode_form(gallery, shot_images):
    gallery.add_brand("  Red ", shot_images[0])
    assert gallery.brands == ["Red"] and "Red " in gallery and len(gallery.shots(" Red")) == 1
    with pytest.raises(ValueError, match="'Red' is already in the gallery"):
        gallery.add_brand("Red", shot_images[1])
    decomposed, composed = "Cafe\u0301", "Caf\u00e9"  # é typed as e + combining accent, and precomposed
    gallery.add_brand_embeddings(decomposed, gallery.embed(shot_images[2]))
    assert gallery.brands == ["Red", composed] and decomposed in gallery
    gallery.rename_brand(composed, " Café Noir ")
    assert gallery.brands == ["Red", "Café Noir"]
    with pytest.raises(ValueError, match="given twice"):
        gallery.add_brands({"Blue": gallery.embed(shot_images[3]), "Blue ": gallery.embed(shot_images[4])})
    with pytest.raises(TypeError, match="brand must be a str .* got int 7"):
        gallery.add_brand(7, shot_images[3])
    with pytest.raises(TypeError, match="new_name must be a str"):
        gallery.rename_brand("Red", None)
    with pytest.raises(ValueError, match="non-empty string"):
        gallery.rename_brand("Red", " \t")
    assert gallery.brands == ["Red", "Café Noir"]


def test_near_duplicate_brand_names_are_kept_with_a_warning(gallery, shot_images, caplog):
    import logging

    vectors = gallery.embed(shot_images[:6])
    with caplog.at_level(logging.WARNING, logger="modeling_logo.few_shot"):
        gallery.add_brand_embeddings("Red", vectors[0])
        gallery.add_brand_embeddings("Blue Bird", vectors[1])
        assert not caplog.records
        gallery.add_brand_embeddings("red", vectors[2])
        gallery.add_brands({"ＢＬＵＥ  bird": vectors[3], "Green": vectors[4]})  # full-width letters, two spaces
        gallery.add_brand_embeddings("Red", vectors[5], overwrite=True)  # the same brand again: no warning
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "'red' and 'Red'" in warnings[0] and "'ＢＬＵＥ  bird' and 'Blue Bird'" in warnings[1]
    assert gallery.brands == ["Red", "Blue Bird", "red", "ＢＬＵＥ  bird", "Green"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_logo.few_shot"):
        gallery.remove_brand("red")
        gallery.rename_brand("Green", "RED ")  # "Red" is still there
        gallery.rename_brand("ＢＬＵＥ  bird", "Yellow")
    assert [record.getMessage().count("'RED' and 'Red'") for record in caplog.records] == [1]


def test_tiny_images_are_embedded_with_a_warning(gallery, shot_images, caplog):
    import logging

    from PIL import Image

    tiny, dot = shot_images[0].resize((12, 40)), Image.new("RGB", (1, 1), "red")
    with caplog.at_level(logging.WARNING, logger="modeling_logo.few_shot"):
        gallery.add_brand("Acme", shot_images[1])  # 96 x 72: no warning
        gallery.add_brand("Small", [shot_images[2], tiny, np.zeros((8, 8, 3), dtype=np.uint8)])
        gallery.search(dot)
        gallery.add_brand("Cropped", shot_images[3], boxes=[(10, 10, 15, 60)])  # the crop is what is embedded
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("2 shot image(s) smaller than 16 px on a side (the smallest 8x8)")
    assert warnings[1].startswith("1 query image(s) smaller than 16 px on a side (the smallest 1x1)")
    assert "shot image(s)" in warnings[2]
    assert len(gallery.shots("Small")) == 3  # accepted


def test_more_shots_than_the_maximum_are_accepted_with_a_warning(caplog):
    import logging

    from modeling_logo.few_shot import MAX_SHOTS_PER_BRAND

    rng = np.random.default_rng(0)
    gallery = LogoGallery()
    with caplog.at_level(logging.WARNING, logger="modeling_logo.few_shot"):
        gallery.add_brand_embeddings("Few", rng.normal(size=(MAX_SHOTS_PER_BRAND, 128)))
        assert not caplog.records
        gallery.add_shot_embeddings("Few", rng.normal(size=128))
        gallery.add_brands({f"b{i}": rng.normal(size=(MAX_SHOTS_PER_BRAND + 1 + i, 128)) for i in range(3)})
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"1 brand(s) have more than {MAX_SHOTS_PER_BRAND} shots ('Few': 101)")
    assert warnings[1].startswith(f"3 brand(s) have more than {MAX_SHOTS_PER_BRAND} shots ('b2': 103)")
    assert "1-5 is the paper's regime" in warnings[0] and len(gallery.shots("Few")) == 101


def test_bad_arguments_are_one_line_errors_naming_the_argument(gallery, shot_images):
    gallery.add_brand("Acme", shot_images[0])
    cases = [
        (lambda: gallery.search(shot_images[1], top_k="5"), TypeError, "top_k must be a positive int, got str '5'"),
        (lambda: gallery.search(shot_images[1], top_k=2.0), TypeError, "top_k must be a positive int"),
        (lambda: gallery.search(shot_images[1], top_k=-1), ValueError, "top_k must be at least 1, got -1"),
        (lambda: LogoGallery(batch_size=0), ValueError, "batch_size must be at least 1"),
        (lambda: LogoGallery(ivf_nprobe="8"), TypeError, "ivf_nprobe must be a positive int"),
        (lambda: gallery.add_brand("Globex", shot_images[1], metadata=["a"]), TypeError, "metadata must be a dict"),
        (lambda: gallery.add_brands([("Globex", np.ones(64))]), TypeError, "add_brands\\(\\) takes a mapping"),
        (lambda: gallery.remove_shot("Acme", "0"), TypeError, "index must be an int"),
        (lambda: gallery.remove_brand(3), KeyError, "Brand 3 is not in the gallery"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message) as raised:
            call()
        assert "\n" not in str(raised.value)
    assert gallery.brands == ["Acme"]
