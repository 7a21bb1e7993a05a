"""Model page: the model card, the checkpoint and the modalities in use."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer import common
from mmsa.paths import WEIGHTS_DIR

MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def checkpoint_facts(encoder) -> dict[str, str]:
    """What the user should know about the loaded checkpoint."""
    path = Path(encoder.path) if getattr(encoder, "path", None) else None
    facts = {
        "checkpoint": str(path) if path else "(in memory)",
        "sha256": encoder.checkpoint_hash,
        "embedding dimension": str(encoder.dim),
        "memory slots": str(encoder.num_slots),
        "modalities": ", ".join(encoder.modalities),
        "device": str(getattr(encoder, "device", "cpu")),
    }
    if path and path.is_file():
        facts["size"] = f"{path.stat().st_size / 1e6:.1f} MB"
    return facts


def card_parts(text: str, folder: Path) -> list[tuple[str, str]]:
    """Split a markdown card into ("md", text) and ("img", path) parts, so the images it
    links (loss curves) can be shown with st.image; only files inside ``folder`` are kept."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _IMAGE.finditer(text):
        parts.append(("md", text[pos:m.start()]))
        target = (folder / m.group(2)).resolve()
        if target.is_file() and folder.resolve() in target.parents:
            parts.append(("img", str(target)))
        pos = m.end()
    parts.append(("md", text[pos:]))
    return [p for p in parts if p[1].strip()]


def render() -> None:
    common.sidebar()
    st.title("Model")
    encoder = common.get_encoder()
    if encoder is not None:
        st.subheader("Checkpoint in use")
        st.dataframe(pd.DataFrame(list(checkpoint_facts(encoder).items()),
                                  columns=["", "value"]), hide_index=True, width="stretch")
        st.caption("Search embeds queries with the fast path (graph branch + memory readout); "
                   "the image and 3D branches were used in pre-training.")
    lib = common.open_selected(show=False)
    if lib is not None:
        ck = lib.manifest.get("checkpoint") or {}
        same = encoder is not None and ck.get("sha256") == encoder.checkpoint_hash
        st.markdown(f"Library **{lib.name}** was embedded with checkpoint "
                    f"`{str(ck.get('sha256', '?'))[:12]}` "
                    + ("(the one loaded)." if same else "(**not** the one loaded)."))
    st.divider()
    if MODEL_CARD.is_file():
        for kind, part in card_parts(MODEL_CARD.read_text(encoding="utf-8"), MODEL_CARD.parent):
            if kind == "md":
                st.markdown(part)
            else:
                st.image(part)
    else:
        st.info(f"No model card found at {MODEL_CARD}.")
