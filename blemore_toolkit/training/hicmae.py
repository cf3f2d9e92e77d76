"""Training HiCMAE with ``blemore train --model hicmae``: its clips, batches, and the BLEMORE fork's recipe.

HiCMAE takes face frames and log-mel features (``HicmaeProcessor``), not the inputs of the composed BLEMORE models,
so it has its own dataset transform and collator here; the loop, folds, validation, α/β tuning and saving are
``training.train``'s, as for every model.

``--recipe paper`` is the fine-tuning of TS1349/HiCMA_BlEmoRe
(``scripts/voxceleb2/audio_visual/hicmae_pretrain_base/blemore/finetune.sh`` and the defaults of
``run_class_finetuning_regression_av.py`` it relies on): ``PAPER_RECIPE`` lists every setting with its source,
and docs/recipes.md prints the same list. What the fork does that this recipe does not is listed in
``PAPER_RECIPE_DIFFERENCES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import blemore
from blemore_toolkit.training.batches import LABEL_KEY, batch_outcomes, undecoded_clips

FORK = "TS1349/HiCMA_BlEmoRe"
SCRIPT = "blemore/finetune.sh"
RUNNER = "run_class_finetuning_regression_av.py"


@dataclass(frozen=True)
class HicmaeRecipe:
    """The fork's fine-tuning settings (``PAPER_RECIPE`` gives each one's source)."""

    epochs: int = 80
    batch_size: int = 32
    base_learning_rate: float = 1e-3
    min_learning_rate: float = 1e-6
    reference_batch: int = 256
    warmup_epochs: int = 5
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    layer_decay: float = 0.75
    drop_path_rate: float = 0.1
    seed: int = 0
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333)
    flip_probability: float = 0.5
    erase_probability: float = 0.25
    random_gain: bool = True
    rand_augment: bool = True

    def learning_rate(self, total_batch: int) -> float:
        """Peak learning rate: ``lr · total batch / 256`` (the runner's linear scaling)."""
        return self.base_learning_rate * total_batch / self.reference_batch

    def final_learning_rate(self, total_batch: int) -> float:
        return self.min_learning_rate * total_batch / self.reference_batch


PAPER = HicmaeRecipe()

#: (setting, value, where the fork sets it): what ``--recipe paper`` applies, in docs/recipes.md too.
PAPER_RECIPE: list[tuple[str, str, str]] = [
    ("model", "avit_dim512_patch16_160_a256, depth 10 / depth_audio 10 / fusion_depth 2",
     f"{SCRIPT}: --model, --depth, --depth_audio, --fusion_depth"),
    ("initialisation", "VoxCeleb2 pretraining checkpoint-99.pth (convert it: blemore convert hicmae)",
     f"{SCRIPT}: --finetune ${{MODEL_PATH}}"),
    ("objective", "six outputs, soft-target cross-entropy (toolkit: the KL form, same gradients)",
     f"{SCRIPT}: --nb_classes 6 --loss ce"),
    ("epochs", "80", f"{SCRIPT}: --epochs 80"),
    ("batch size", "32 in total (drop_last)", f"{SCRIPT}: --batch_size 32; {RUNNER}: drop_last=True"),
    ("optimiser", "AdamW, betas (0.9, 0.999), eps 1e-8", f"{SCRIPT}: --opt adamw --opt_betas 0.9 0.999; "
     f"{RUNNER}: --opt_eps 1e-8"),
    ("learning rate", "1e-3 × total batch / 256 (1.25e-4 at 32)", f"{SCRIPT}: --lr 1e-3; {RUNNER}: "
     "args.lr * total_batch_size / 256"),
    ("schedule", "per step: linear warm-up from 0 over 5 epochs, then cosine to 1e-6 × batch / 256",
     f"{RUNNER}: --warmup_epochs 5, --min_lr 1e-6, utils.cosine_scheduler"),
    ("weight decay", "0.05, none on biases and 1-D weights (norms, q/v biases, layer weights)",
     f"{SCRIPT}: --weight_decay 0.05; optim_factory.get_parameter_groups"),
    ("layer decay", "0.75: lr × 0.75^(13 − layer); patch embeddings layer 0, video/audio layer i → i + 1, "
     "fusion layer i → 11 + i, norms, layer weights and head 13", f"{RUNNER}: --layer_decay 0.75; "
     "optim_factory.get_num_layer_for_avit"),
    ("stochastic depth", "0.1, linear over each encoder's layers (fusion too)", f"{RUNNER}: --drop_path 0.1"),
    ("frames", "16 frames every 4th (train: a random 64-frame span, linspace), resized to 160 × 160",
     f"{SCRIPT}: --num_frames 16 --sampling_rate 4 --input_size 160; kinetics_av.VideoClsDatasetFrame"),
    ("spatial augmentation", "RandAugment (4 operations of the increasing set, magnitude 7 ± 0.5, each with "
     "probability 0.5, the same on every frame), random resized crop (scale 0.08–1, ratio 3/4–4/3), horizontal flip "
     "0.5, random erasing 0.25 per frame (pixel mode)", f"kinetics_av._aug_frame; {RUNNER}: --aa "
     "rand-m7-n4-mstd0.5-inc1 --train_interpolation bicubic --reprob 0.25"),
    ("audio", "16 kHz, the window's span, 128-bin Kaldi log-mel, 256 frames, AudioSet normalisation; random gain "
     "(Beta(10, 10) + 0.5)", f"{RUNNER}: --num_mel_bins 128 --input_size_audio 256, roll_mag_aug default on"),
    ("mixup / cutmix", "none: the runner's defaults (0.8 / 1.0) are never applied", f"{RUNNER}: mixup_fn = None"),
    ("label smoothing", "none: --smoothing 0.1 is unused with --loss ce", f"{RUNNER}: criterion = "
     "torch.nn.CrossEntropyLoss()"),
    ("SpecAugment", "none (frequency and time masks 0)", f"{RUNNER}: --freqm 0 --timem 0"),
    ("repeated augmentation", "none (one sample per clip)", f"{SCRIPT}: --num_sample 1"),
    ("gradient clipping, EMA", "none", f"{RUNNER}: --clip_grad None, --model_ema off"),
    ("mixed precision", "fp16 autocast with loss scaling (on a GPU)", "engine_for_finetuning_regression_av.py"),
    ("seed", "0", f"{RUNNER}: --seed 0"),
]

#: What the fork does that ``--recipe paper`` does not (stated, not hidden).
PAPER_RECIPE_DIFFERENCES: list[str] = [
    "The fork keeps the epoch with the best validation CCC of the six outputs; the toolkit keeps the best "
    "challenge score.",
    "The fork's test averages 2 temporal segments × 2 crops (identical on square frames); the toolkit's "
    "validation during training and `blemore predict` use one centred window (the pipeline averages the two "
    "segments with `HicmaeProcessor(num_segments=2)`).",
    "The fork scales the test audio by a random gain as well (roll_mag_aug is on in every mode); the toolkit only "
    "in training.",
    "The fork's splits are its own (split01–06); the toolkit trains on its actor-disjoint folds.",
]


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


def tiny_hicmae_config(num_frames: int = 4, image_size: int = 32, **settings):
    """A tiny random HiCMAE (the tests' and benchmarks' model): 8-pixel patches, 64 × 32 log-mel, one layer each."""
    from blemore_toolkit.modeling.configuration_hicmae import HicmaeConfig

    defaults = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1,
                    num_audio_hidden_layers=1, num_fusion_layers=1, image_size=image_size, patch_size=8,
                    num_frames=num_frames, audio_length=64, num_mel_bins=32, audio_patch_size=8, drop_path_rate=0.0)
    return HicmaeConfig(**{**defaults, **settings})


def build_hicmae(settings):
    """(model, processor) for ``--model hicmae``: from ``--init-from`` (a converted or trained HiCMAE folder), else
    the tiny random model. ``--recipe paper`` sets the stochastic depth of the fork."""
    from blemore_toolkit.modeling.configuration_hicmae import HicmaeConfig
    from blemore_toolkit.modeling.modeling_hicmae import HicmaeForBlendedEmotionRecognition
    from blemore_toolkit.modeling.processing_hicmae import HicmaeProcessor

    torch.manual_seed(settings.seed)
    overrides = dict(settings.model_settings)
    if settings.recipe == "paper":
        overrides["drop_path_rate"] = PAPER.drop_path_rate
    if settings.init_from:
        folder = Path(settings.init_from)
        try:
            config = HicmaeConfig.from_pretrained(folder)
        except (OSError, ValueError) as error:
            raise blemore.BlemoreError(f"{folder}: not a HiCMAE model folder ({' '.join(str(error).split())[:200]})"
                                       ) from None
        if config.model_type != "hicmae":
            raise blemore.BlemoreError(f"{folder}: a {config.model_type!r} model, not HiCMAE (--model hicmae)")
        model = HicmaeForBlendedEmotionRecognition.from_pretrained(folder, **overrides)
        return model, HicmaeProcessor.from_pretrained(folder)
    config = tiny_hicmae_config(settings.num_frames or 4, settings.image_size, **overrides)
    return HicmaeForBlendedEmotionRecognition(config), HicmaeProcessor.from_model_config(config)


# ---------------------------------------------------------------------------------------------------------------
# Optimiser and schedule of the recipe
# ---------------------------------------------------------------------------------------------------------------


def layer_id(name: str, num_modality_layers: int, num_layers: int) -> int:
    """The fork's layer index of a parameter (``get_num_layer_for_avit``) on this model's names."""
    name = name.removeprefix("hicmae.")
    if name.startswith(("video_embeddings.", "audio_embeddings.")):
        return 0
    for prefix, offset in (("video_layers.", 0), ("audio_layers.", 0), ("fusion_video_layers.", num_modality_layers),
                           ("fusion_audio_layers.", num_modality_layers)):
        if name.startswith(prefix):
            return int(name[len(prefix):].split(".")[0]) + offset + 1
    return num_layers + 1  # norms, layer weights, embedding norm, head: the last value (scale 1)


def parameter_groups(model, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups as the fork's ``get_parameter_groups``: per (layer, decay) with ``lr_scale`` = layer decay."""
    config = model.config
    modality_layers = max(config.num_hidden_layers, config.num_audio_hidden_layers)
    num_layers = modality_layers + config.num_fusion_layers
    scales = [layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2)]
    groups: dict[str, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = not (parameter.dim() == 1 or name.endswith(".bias"))
        layer = layer_id(name, modality_layers, num_layers)
        key = f"layer_{layer}_{'decay' if decay else 'no_decay'}"
        group = groups.setdefault(key, {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                                        "lr_scale": scales[layer], "layer": layer})
        group["params"].append(parameter)
        group["names"].append(name)
    return list(groups.values())


def lr_schedule(peak: float, final: float, epochs: int, steps_per_epoch: int, warmup_epochs: int) -> np.ndarray:
    """Per-step learning rates: linear from 0 to ``peak`` over the warm-up epochs, then a half cosine to ``final``
    (the fork's ``utils.cosine_scheduler`` with its default start of 0)."""
    warmup = warmup_epochs * steps_per_epoch
    total = epochs * steps_per_epoch
    ramp = np.linspace(0.0, peak, warmup) if warmup > 0 else np.array([])
    rest = np.arange(total - warmup)
    cosine = final + 0.5 * (peak - final) * (1 + np.cos(np.pi * rest / max(len(rest), 1)))
    return np.concatenate([ramp, cosine])


def paper_optimizer(model, total_batch: int, steps_per_epoch: int, recipe: HicmaeRecipe = PAPER):
    """(AdamW with layer-decayed groups, LambdaLR following ``lr_schedule``) for the Trainer's ``optimizers``."""
    peak = recipe.learning_rate(total_batch)
    groups = parameter_groups(model, recipe.weight_decay, recipe.layer_decay)
    optimizer = torch.optim.AdamW(
        [{"params": g["params"], "weight_decay": g["weight_decay"], "lr": peak * g["lr_scale"],
          "lr_scale": g["lr_scale"], "layer": g["layer"]} for g in groups],
        lr=peak, betas=recipe.betas, eps=recipe.eps,
    )
    schedule = lr_schedule(peak, recipe.final_learning_rate(total_batch), recipe.epochs, steps_per_epoch,
                           recipe.warmup_epochs)
    factors = (schedule / peak).tolist()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factors[min(step, len(factors) - 1)])
    return optimizer, scheduler


def apply_paper_recipe(settings, recipe: HicmaeRecipe = PAPER):
    """The settings the recipe fixes (epochs, batch, seed); the rest is in ``paper_optimizer`` and the data."""
    import dataclasses

    return dataclasses.replace(settings, epochs=recipe.epochs, batch_size=recipe.batch_size, seed=recipe.seed,
                               learning_rate=None, weight_decay=recipe.weight_decay, warmup_ratio=0.0)


# ---------------------------------------------------------------------------------------------------------------
# Clips and batches
# ---------------------------------------------------------------------------------------------------------------


def training_window(num_available: int, num_frames: int, stride: int, rng: np.random.Generator):
    """The fork's training frames (``VideoClsDatasetFrame.load_video``): a random span of num_frames · stride
    frames, num_frames indices spread over it; the audio from the first frame to num_frames · stride later."""
    span = num_frames * stride
    if num_available <= span:
        index = np.linspace(0, num_available, num=num_available // stride)
        index = np.concatenate([index, np.ones(num_frames - num_available // stride) * num_available])
        index = np.clip(index, 0, num_available - 1).astype(np.int64)
    else:
        end = int(rng.integers(span, num_available))
        index = np.clip(np.linspace(end - span, end, num=num_frames), end - span, end - 1).astype(np.int64)
    first = int(index[0])
    return index.tolist(), first, min(first + span, num_available - 1)


def random_resized_crop(frames: torch.Tensor, scale, ratio, rng: np.random.Generator) -> torch.Tensor:
    """One crop for all frames (area fraction in ``scale``, aspect in ``ratio``, log-uniform), resized back."""
    _, _, height, width = frames.shape
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            break
    else:
        h, w = height, width
        top, left = 0, 0
    crop = frames[:, :, top:top + h, left:left + w]
    return torch.nn.functional.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)


def random_erase(frames: torch.Tensor, probability: float, rng: np.random.Generator) -> torch.Tensor:
    """Per frame, with ``probability``: a rectangle (2–33 % of the area, aspect 0.3–3.3) of normal noise."""
    frames = frames.clone()
    _, channels, height, width = frames.shape
    for frame in frames:
        if rng.random() > probability:
            continue
        for _ in range(10):
            target = height * width * rng.uniform(0.02, 1 / 3)
            aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if h < height and w < width:
                top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                noise = torch.from_numpy(rng.standard_normal((channels, h, w)).astype(np.float32))
                frame[:, top:top + h, left:left + w] = noise
                break
    return frames


def _rand_augmented(frames: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """uint8 frames resized to ``size`` (as the fork resizes before augmenting), through RandAugment."""
    from PIL import Image

    from blemore_toolkit.training.rand_augment import rand_augment_clip

    resized = torch.nn.functional.interpolate(frames.to(torch.float32), size=(size, size), mode="bilinear",
                                              align_corners=False, antialias=True)
    images = [Image.fromarray(frame.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
              for frame in resized]
    images = rand_augment_clip(images, rng)
    return torch.stack([torch.from_numpy(np.array(image)).permute(2, 0, 1) for image in images])


class HicmaeClipDecoder:
    """Dataset transform: rows with encoded ``video``/``audio`` → HiCMAE's inputs (in DataLoader workers).

    ``augment`` (a recipe) samples and augments as the fork's training loader; without it, the processor's
    deterministic window.
    """

    def __init__(self, processor, with_labels: bool, augment: HicmaeRecipe | None = None,
                 faces_dir: str | None = None):
        self.processor, self.with_labels, self.augment = processor, with_labels, augment
        self.faces_dir = faces_dir

    def face_folder(self, clip_id: str) -> Path:
        """The clip's aligned faces: ``FACES/CLIP_ID`` or OpenFace's ``FACES/CLIP_ID_aligned``."""
        for name in (clip_id, f"{clip_id}_aligned"):
            folder = Path(self.faces_dir) / name
            if folder.is_dir():
                return folder
        raise ValueError(f"no face folder {Path(self.faces_dir) / clip_id} (or {clip_id}_aligned) for this clip")

    def clip(self, video, audio, rng: np.random.Generator, faces=None):
        processor = self.processor
        count, read = processor._open_video(faces if faces is not None else video, faces=faces is not None)
        if self.augment is None:
            indices, first, last = processor.window(count)
        else:
            indices, first, last = training_window(count, processor.num_frames, processor.frame_stride, rng)
        unique = sorted(set(indices))
        frames = read(unique)[[unique.index(i) for i in indices]]
        if self.augment is not None and self.augment.rand_augment:
            frames = _rand_augmented(frames, processor.image_size, rng)
        frames = processor.prepare_frames(frames)
        waveform = processor.audio_window(processor.load_audio(audio), first, last, count)
        if self.augment is not None:
            recipe = self.augment
            frames = random_resized_crop(frames, recipe.crop_scale, recipe.crop_ratio, rng)
            if rng.random() < recipe.flip_probability:
                frames = frames.flip(-1)
            if recipe.erase_probability > 0:
                frames = random_erase(frames, recipe.erase_probability, rng)
            if recipe.random_gain:
                waveform = (waveform - waveform.mean()) * float(rng.beta(10, 10) + 0.5)
        return frames, processor.log_mel(waveform)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        out: dict[str, list] = {"clip_id": list(batch["clip_id"]), "pixel_values_videos": [], "input_features": []}
        for index, clip_id in enumerate(batch["clip_id"]):
            try:
                faces = self.face_folder(clip_id) if self.faces_dir else None
                frames, features = self.clip(batch["video"][index], batch["audio"][index], rng, faces)
            except (ValueError, RuntimeError, OSError) as error:
                raise blemore.BlemoreError(f"clip {clip_id}: {' '.join(str(error).split())}") from None
            out["pixel_values_videos"].append(frames)
            out["input_features"].append(features)
        if self.with_labels:
            out[LABEL_KEY] = batch_outcomes(batch)
        return out


class HicmaeCollator:
    """Decoded clips → ``pixel_values_videos``, ``input_features`` (+ ``labels``, outcome indices)."""

    def __call__(self, rows):
        batch = {key: torch.stack([row[key] for row in rows]) for key in ("pixel_values_videos", "input_features")}
        if LABEL_KEY in rows[0]:
            batch[LABEL_KEY] = torch.tensor([int(row[LABEL_KEY]) for row in rows], dtype=torch.long)
        return batch


def hicmae_stream(split, processor, with_labels: bool, augment: HicmaeRecipe | None = None,
                  faces_dir: str | None = None):
    """A split that decodes its clips into HiCMAE inputs on access (frames from ``faces_dir`` when given)."""
    return undecoded_clips(split, with_labels).with_transform(
        HicmaeClipDecoder(processor, with_labels, augment, faces_dir))


def trainer_parts(settings, model, processor, train_split, eval_split, arguments) -> dict:
    """The Trainer's datasets, collator and (paper recipe) optimiser for a HiCMAE run."""
    augment = PAPER if settings.recipe == "paper" else None
    parts = {
        "train_dataset": hicmae_stream(train_split, processor, True, augment, settings.faces_dir),
        "eval_dataset": (hicmae_stream(eval_split, processor, True, faces_dir=settings.faces_dir)
                         if eval_split is not None else None),
        "data_collator": HicmaeCollator(),
    }
    if settings.recipe == "paper":
        world = max(1, arguments.world_size)
        total_batch = arguments.per_device_train_batch_size * arguments.gradient_accumulation_steps * world
        steps_per_epoch = max(1, len(train_split) // total_batch)
        parts["optimizers"] = paper_optimizer(model, total_batch, steps_per_epoch)
    return parts


__all__ = ["PAPER", "PAPER_RECIPE", "PAPER_RECIPE_DIFFERENCES", "HicmaeCollator", "HicmaeRecipe",
           "apply_paper_recipe", "build_hicmae", "hicmae_stream", "layer_id", "lr_schedule", "paper_optimizer",
           "parameter_groups", "tiny_hicmae_config", "trainer_parts"]
