"""The Gradio Space of few-shot logo recognition (`space/app.py`), importable as `space.app` from the repository root.

On a Hugging Face Space, `app.py` runs on its own, next to a copy of `modeling_logo`: `python -m space.export <folder>`
(`space/export.py`) writes that folder (see `space/README.md`).
"""
