"""From prepared dataset rows to model batches: decoding in DataLoader workers, then one collator.

Training and prediction read clips the same way, so both use this module:

1. ``clip_stream(split, processor)`` keeps the encoded video and audio bytes in the dataset (no decoding when a row
   is read) and attaches ``ClipDecoder`` as the dataset's transform. The DataLoader's worker processes read rows,
   so each worker decodes its own clips with torchcodec: the sampled frames at their stored size, and the 16 kHz
   track. Only what the model needs leaves the worker: frames, waveform, the outcome label, the clip id.
2. ``ClipCollator`` turns a list of decoded clips into the model's inputs with the model's own processor (resize,
   normalise, pad audio and build the attention mask) and stacks the labels. Columns the model does not take never
   reach it, so the Trainer needs no column removal (``remove_unused_columns=False``).

A clip that cannot be decoded stops the run with one line naming it (``blemore.BlemoreError``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

import blemore

#: Label the Trainer hands to the model: the outcome index (0-35), accepted by both objectives.
LABEL_KEY = "labels"


class ClipDecoder:
    """Dataset transform: rows with encoded ``video``/``audio`` → sampled frames and waveforms (picklable).

    ``with_labels`` adds the outcome index as ``labels``; rows without one (the unlabelled test split) are refused
    then, so a training run never silently drops clips.
    """

    def __init__(self, processor, with_labels: bool):
        self.processor = processor
        self.with_labels = with_labels

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        decoded: dict[str, list] = {"clip_id": list(batch["clip_id"])}
        has_video = self.processor.video_processor is not None
        has_audio = self.processor.feature_extractor is not None
        frames, waveforms = [], []
        for index, clip_id in enumerate(batch["clip_id"]):
            try:
                if has_video:
                    frames.append(self.processor.sample_frames(batch["video"][index]))
                if has_audio:
                    waveforms.append(self.processor.load_audio(batch["audio"][index]))
            except (ValueError, RuntimeError) as error:
                reason = " ".join(str(error).split())
                raise blemore.BlemoreError(f"clip {clip_id}: {reason}") from None
        if has_video:
            decoded["frames"] = frames
        if has_audio:
            decoded["waveform"] = waveforms
        if self.with_labels:
            decoded[LABEL_KEY] = batch_outcomes(batch)
        return decoded


def batch_outcomes(batch: dict) -> list:
    """The outcome labels of a batch of dataset rows; an unlabelled clip is an error naming it."""
    outcomes = list(batch["outcome"])
    missing = [clip for clip, outcome in zip(batch["clip_id"], outcomes) if outcome is None]
    if missing:
        raise blemore.BlemoreError(f"clip {missing[0]}: no label (an unlabelled clip in a labelled split)")
    return outcomes


class ClipCollator:
    """Rows → ``pixel_values_videos`` / ``input_values`` + ``attention_mask`` (+ ``labels``) by the processor.

    The data collator for a Trainer script of your own. It takes either

    * plain dataset rows as ``load_dataset`` returns them: ``video`` (a torchcodec ``VideoDecoder``, or the undecoded
      ``{"path", "bytes"}``) and/or ``audio`` (a ``datasets.Audio`` value), whichever the model has an encoder for;
      decoding happens here, so in the DataLoader's worker processes; or
    * rows decoded by ``ClipDecoder`` (``frames``/``waveform``), what ``clip_stream`` gives.

    Labels: a row's ``labels`` if it has them, else its ``outcome`` (the index 0-35 both objectives accept); rows
    without either (the unlabelled test split) give a batch without labels. Give the Trainer
    ``remove_unused_columns=False``, or it drops ``video``/``audio`` before they get here:

    ```python
    collator = ClipCollator(processor)
    trainer = Trainer(model=model, args=TrainingArguments(..., remove_unused_columns=False),
                      train_dataset=ds["train"], data_collator=collator,
                      compute_metrics=challenge_metrics(model.config))
    ```
    """

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        first = rows[0]
        if "frames" in first or "waveform" in first:
            videos = [row["frames"] for row in rows] if "frames" in first else None
            audio = [row["waveform"] for row in rows] if "waveform" in first else None
            batch = dict(self.processor(videos=videos, audio=audio, return_tensors="pt"))
        else:
            batch = self._process_dataset_rows(rows)
        labels = _labels(rows)
        if labels is not None:
            batch[LABEL_KEY] = torch.tensor(labels, dtype=torch.long)
        return batch

    def _process_dataset_rows(self, rows: Sequence[dict[str, Any]]) -> dict:
        wanted = [name for name, part in (("video", self.processor.video_processor),
                                          ("audio", self.processor.feature_extractor)) if part is not None]
        missing = [name for name in wanted if name not in rows[0]]
        if missing:
            raise blemore.BlemoreError(
                f"rows lack {missing} (the model needs {wanted}); got columns {sorted(rows[0])}: pass the dataset's "
                "rows with their video/audio columns (Trainer: remove_unused_columns=False)")
        try:
            return dict(self.processor(videos=[row["video"] for row in rows] if "video" in wanted else None,
                                       audio=[row["audio"] for row in rows] if "audio" in wanted else None,
                                       return_tensors="pt"))
        except (ValueError, RuntimeError) as error:
            clips = ", ".join(str(row.get("clip_id", "?")) for row in rows)
            raise blemore.BlemoreError(f"clips {clips}: {' '.join(str(error).split())}") from None


def _labels(rows: Sequence[dict[str, Any]]) -> list[int] | None:
    """Outcome indices of the rows (``labels`` or ``outcome``), None when the rows carry none."""
    key = LABEL_KEY if LABEL_KEY in rows[0] else "outcome" if "outcome" in rows[0] else None
    if key is None or all(row[key] is None for row in rows):
        return None
    for row in rows:
        if row[key] is None:
            raise blemore.BlemoreError(f"clip {row.get('clip_id', '?')}: no label beside labelled clips")
    return [int(row[key]) for row in rows]


def undecoded_clips(split, with_labels: bool):
    """The split's clip columns (``clip_id``, ``video``, ``audio``, and ``outcome`` with labels) with the media left
    undecoded, for a transform that decodes them on access."""
    import datasets

    keep = ["clip_id", "video", "audio"] + (["outcome"] if with_labels else [])
    missing = [name for name in keep if name not in split.column_names]
    if missing:
        raise blemore.BlemoreError(f"dataset split lacks columns {missing}; is it a folder written by "
                                   "`blemore prepare`?")
    split = split.select_columns(keep)
    return split.cast_column("video", datasets.Video(decode=False)).cast_column("audio", datasets.Audio(decode=False))


def clip_stream(split, processor, with_labels: bool):
    """A dataset split that decodes its clips on access (in DataLoader workers), ready for ``ClipCollator``."""
    return undecoded_clips(split, with_labels).with_transform(ClipDecoder(processor, with_labels))


def labelled_outcomes(split) -> list[int]:
    """The outcome index of every clip of a labelled split, in order (without decoding any media)."""
    outcomes = split.select_columns(["clip_id", "outcome"])
    values = outcomes["outcome"]
    for clip_id, outcome in zip(outcomes["clip_id"], values):
        if outcome is None:
            raise blemore.BlemoreError(f"clip {clip_id}: no label (an unlabelled clip in a labelled split)")
    return list(values)


@contextlib.contextmanager
def cpu_threads_beside_workers(num_workers: int) -> Iterator[int]:
    """On a CPU-only run, give torch's intra-op threads only the cores the DataLoader workers leave free.

    The workers decode clips at the same time as the main process computes; when torch's threads outnumber the
    free cores they spin waiting on each other and a training step gets an order of magnitude slower (measured:
    0.11 s per tiny-model step with one thread, 2.6 s with two, on 2 busy cores). With a GPU the threads barely
    matter and are left alone. Never more threads than the process had (``OMP_NUM_THREADS``, as torchrun and the
    test workers set it, is kept). The previous setting is restored on leaving. Yields the thread count in use.
    """
    previous = torch.get_num_threads()
    if torch.cuda.is_available():
        yield previous
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, min(previous, cores - max(0, num_workers))))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
