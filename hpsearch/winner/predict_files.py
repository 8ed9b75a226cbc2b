"""``hpsearch predict``: a ``Predictor``'s answer for each image file (and its heat map as a PNG),
one line each; a bad file gets its own error and never stops the others."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from ..errors import UsageError, brief, param
from .predict import HEATMAP_SUFFIX, METHOD_NAMES, Predictor

__all__ = ["predict_files", "answer_line", "read_image_file", "MAX_FILE_BYTES"]


MAX_FILE_BYTES = 50 * 1024 * 1024  # an image file larger than this is refused before it is read


def read_image_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the image file ``path``: a regular file of at most ``max_bytes`` (a FIFO, a device
    such as /dev/zero or a huge sparse file is refused before reading, as the page caps an upload)."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode) or \
            stat.S_ISBLK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise UsageError(f"it is {kind}, not an image file")
    if info.st_size > max_bytes:
        raise UsageError(f"{info.st_size:,} bytes: an image file may have at most {max_bytes // 2**20} MB")
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while read
        raise UsageError(f"more than {max_bytes // 2**20} MB: an image file may have at most that")
    return data


def predict_files(predictor: Predictor, paths, explain: bool = False, out_dir=None, size: int = 224):
    """``hpsearch predict``: the class of each image file, and with ``explain`` its heat map as a PNG.

    Parameters
    ----------
    predictor : Predictor
    paths : iterable of path
        Image files (PNG, JPEG, GIF, BMP, WebP, TIFF), read with ``open_image`` and ``preprocess``
        as the page reads an upload.
    explain : bool
        Write the input the net saw and the heat map over it, with a colour bar
        (``Predictor.explained_png``), to
        ``<stem>.heatmap.png`` beside the file, or in ``out_dir`` when given (created; a name that
        two files would share gets ``-2``, ``-3``, ... before the suffix).
    size : int
        The heat map's side in pixels (of each panel, for one label per position).

    Yields
    ------
    dict
        Per path, in order: ``path``, ``class_name``, ``class_index``, ``probability`` (None when
        the file could not be read), ``ood_score`` and ``unlike_training`` (``Predictor.unlike``: the
        input's distance to the training images over the calibrated threshold, and whether it is
        above 1), ``heatmap`` (the written path or None) and ``error`` (one line, or None). A file
        that cannot be read, is no image, or whose heat map cannot be written gets its ``error``;
        the next file is answered all the same.

        For a winner with one label per position also ``digits`` (the class name at each position,
        left to right) and ``position_probabilities`` (each one's probability); ``class_name`` is
        the digits as one label (``"042"``, see ``hpsearch.viz.positions.label_text``),
        ``class_index`` the list of class indices, ``probability`` the product of the positions'
        (the probability of the whole label, the positions' outputs being independent), and the
        heat map PNG holds one panel per position (``Predictor.heatmaps_png``).
    """
    if explain and out_dir is not None:
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{param('out_dir')} {out_dir}: cannot create the folder ({brief(exc)}); "
                             "give a writable folder") from None
    used: set[Path] = set()
    for path in map(Path, paths):
        answer = {"path": str(path), "class_name": None, "class_index": None, "probability": None,
                  "heatmap": None, "error": None}
        try:
            x = predictor.prepare(read_image_file(path))  # open_image: format check, size cap, decode
        except (OSError, UsageError) as exc:  # UsageError: open_image's ImageRejected, a line of its own
            answer["error"] = f"cannot read it: {brief(exc)}" if isinstance(exc, OSError) else str(exc)
            yield answer
            continue
        proba = predictor.predict_proba(x)[0]
        if predictor.positions:
            from ..viz.positions import label_text

            best, probabilities = predictor.digits(proba)
            answer.update(class_name=label_text(best, predictor.class_names), class_index=best,
                          probability=float(np.prod(probabilities)),
                          digits=[predictor.class_names[c] for c in best], position_probabilities=probabilities)
        else:
            best = int(np.argmax(proba))
            answer.update(class_name=predictor.class_names[best], class_index=best, probability=float(proba[best]))
        answer.update(predictor.unlike(x))
        if explain:
            target = _free_name(Path(out_dir) if out_dir is not None else path.parent, path.stem, used)
            try:
                if predictor.positions:
                    png = predictor.heatmaps_png(x, predictor.explain_positions(x), size=size)
                else:
                    png = predictor.explained_png(x, predictor.explain(x, best), METHOD_NAMES[predictor.method],
                                                  predictor.class_names[best])
                target.write_bytes(png)
                answer["heatmap"] = str(target)
            except OSError as exc:
                answer["error"] = (f"cannot write its heat map {target} ({brief(exc)}); "
                                   f"give {param('out_dir')} DIR to write the heat maps elsewhere")
        yield answer


def answer_line(answer: dict) -> str:
    """One answer of ``predict_files`` as ``hpsearch predict`` prints it, tab-separated: the path,
    the class, its probability (for one label per position: the digits, then each position's
    probability, space-separated), "unlike the training images (score S > 1)" when the input does not
    look like them (``hpsearch.winner.familiar``), and the heat map's path when one was written."""
    if answer.get("position_probabilities") is not None:
        fields = [answer["path"], answer["class_name"], " ".join(f"{p:.4f}" for p in answer["position_probabilities"])]
    else:
        fields = [answer["path"], answer["class_name"], f"{answer['probability']:.4f}"]
    if answer.get("unlike_training"):
        fields.append(f"unlike the training images (score {answer['ood_score']:.2f} > 1)")
    return "\t".join(fields + ([answer["heatmap"]] if answer.get("heatmap") else []))


def _free_name(folder: Path, stem: str, used: set) -> Path:
    """``folder/<stem>.heatmap.png``, or ``<stem>-2.heatmap.png`` ... if this call wrote that one already."""
    target, n = folder / f"{stem}{HEATMAP_SUFFIX}", 1
    while target in used:
        n += 1
        target = folder / f"{stem}-{n}{HEATMAP_SUFFIX}"
    used.add(target)
    return target
