"""A gallery from a folder of brand folders: `LogoGallery.from_folder` and `logo-gallery build`."""

import json

import pytest
import torch

from logo_commands.gallery import main
from modeling_logo import LogoEmbedder, LogoGallery
from modeling_logo.few_shot import SkippedFile

from .conftest import make_logo_images


SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 80"><rect x="10" y="10" width="100" height="60" fill="#1a3c8f"/></svg>'


@pytest.fixture
def brands_dir(tmp_path):
    """Three brands as a user keeps them (PNGs, a JPEG, an SVG, a nested folder), with clutter and broken files."""
    root = tmp_path / "brands"
    acme, bolt, zed = make_logo_images(3, seed=5)
    (root / "Acme" / "old").mkdir(parents=True)
    acme.save(root / "Acme" / "1.png")
    acme.rotate(5, fillcolor="white").save(root / "Acme" / "old" / "2.jpg")  # sub-folders belong to the brand
    (root / "Acme" / ".DS_Store").write_bytes(b"\x00")  # clutter: ignored silently
    (root / "Ben & Jerry's").mkdir()
    (root / "Ben & Jerry's" / "logo.svg").write_text(SVG)
    (root / "Ben & Jerry's" / "notes.txt").write_text("not an image")
    (root / "Zed").mkdir()
    zed.save(root / "Zed" / "zed.webp")
    (root / "Broken").mkdir()
    (root / "Broken" / "logo.svg").write_text("<svg")  # its only file is damaged: the brand is skipped
    (root / "README.md").write_text("outside any brand folder")
    return root


def test_from_folder_registers_every_brand_with_its_files_and_reports_the_rest(brands_dir, tiny_model, processor):
    skipped: list[SkippedFile] = []
    embedder = LogoEmbedder(tiny_model, processor, runtime="torch")
    gallery = LogoGallery.from_folder(brands_dir, embedder, on_skip=skipped.append, batch_size=2)
    assert gallery.brands == ["Acme", "Ben & Jerry's", "Zed"]
    assert gallery.metadata("Acme")["files"] == ["Acme/1.png", "Acme/old/2.jpg"]
    assert [len(gallery.shots(brand)) for brand in gallery.brands] == [2, 1, 1]
    reasons = {item.path.relative_to(brands_dir).as_posix(): item.reason for item in skipped}
    assert list(reasons) == ["README.md", "Ben & Jerry's/notes.txt", "Broken/logo.svg", "Broken"]
    assert 'notes.txt" is not a readable image' in reasons["Ben & Jerry's/notes.txt"]
    assert "logo.svg' is not a readable SVG image" in reasons["Broken/logo.svg"]
    assert reasons["Broken"] == "a brand folder without any readable image"
    # the same embeddings as registering each brand by hand, batched across brands or not
    by_hand = LogoGallery(embedder)
    by_hand.add_brand("Acme", [brands_dir / "Acme" / "1.png", brands_dir / "Acme" / "old" / "2.jpg"])
    by_hand.add_brand("Ben & Jerry's", brands_dir / "Ben & Jerry's" / "logo.svg")
    for brand in ("Acme", "Ben & Jerry's"):
        torch.testing.assert_close(gallery.shots(brand), by_hand.shots(brand), atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        LogoGallery.from_folder(brands_dir / "missing", embedder)
    with pytest.raises(ValueError, match="No brand folder"):
        LogoGallery.from_folder(brands_dir / "Broken", embedder, on_skip=lambda item: None)


def test_logo_gallery_build_writes_a_loadable_gallery(brands_dir, saved_model_dir, tmp_path, capsys):
    out = tmp_path / "gallery"
    argv = ["build", str(brands_dir), str(out), "--model", str(saved_model_dir), "--runtime", "torch"]
    assert main([*argv, "--threshold", "0.7"]) == 0
    printed = capsys.readouterr().err
    assert "Wrote 3 brands (4 shots)" in printed and "4 files or folders skipped" in printed
    assert "Skipped " in printed and "notes.txt" in printed
    manifest = json.loads((out / "gallery.json").read_text(encoding="utf-8"))
    assert manifest["model"] == str(saved_model_dir) and manifest["threshold"] == 0.7

    gallery = LogoGallery.load(out, LogoEmbedder.from_pretrained(saved_model_dir, runtime="torch"))
    assert gallery.brands == ["Acme", "Ben & Jerry's", "Zed"]
    assert gallery.search(brands_dir / "Zed" / "zed.webp")[0].brand == "Zed"

    with pytest.raises(SystemExit):  # a gallery is never replaced unasked
        main(argv)
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    with pytest.raises(SystemExit):
        main(["build", str(tmp_path / "missing"), str(out), "--model", str(saved_model_dir)])
    assert main(["build", str(brands_dir / "Broken"), str(tmp_path / "none"), "--model", str(saved_model_dir)]) == 1
    assert "No brand folder" in capsys.readouterr().err
