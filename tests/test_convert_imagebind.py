"""``blemore convert imagebind`` and ImageBind's features under ``--protocol paper``, against the reference code.

Fixture (tests/fixtures/imagebind/, recorded once in a scratch environment, never at test time):

* ``imagebind_tiny.pth``: an ``ImageBindModel`` built by the reference code, facebookresearch/ImageBind at commit
  53680b02d7e37b19b124fa37bae4b6c98c38f5be (``imagebind/models/imagebind_model.py``), with small arguments
  (vision: width 16, 2 blocks, 2 heads, patch kernel (2, 14, 14), embedding 8; the other modalities width 8),
  every vision weight perturbed at random (layer norms and biases too), saved as ``imagebind_huge.pth`` is: one
  flat state dict, keys ``modality_preprocessors.vision...`` etc. Besides the vision branch it holds the audio
  branch and the text head and postprocessor, which the conversion must drop by name.
* ``reference.npz``: fixed inputs and the reference's vision embeddings (``model({"vision": x})["vision"]``, after
  the vision head and the postprocessor):
  ``images`` (2, 32, 48, 3) uint8 → ``image_embeds``, through ImageBind's own image transform
  (``imagebind/data.py`` ``load_and_transform_vision_data`` on PNG files of the images);
  ``frames`` (3, 36, 50, 3) uint8 → ``frame_embeds``, through the organisers' video transform and per-frame call
  (BlEmoRe/blemore-common at commit 98e6236d55311643ce48a3e57fe29abd1d7810f6,
  ``feature_extraction/video_encoding/ImageBind_data.py``: pytorchvideo 0.1.5 ``ShortSideScale(224)``,
  ``NormalizeVideo`` with CLIP's mean/std, their ``SpatialCrop(224, num_crops=1)``; ``ImageBind_features.py``: one
  (1, 3, 224, 224) frame at a time); ``paper_pixels_checksum``: the sum of each transformed frame's pixels.
* ``imagebind_huge_layout.json.gz``: every key of ``imagebind_huge()``'s state dict with its shape (1,311 keys, all
  six modalities), the layout ``imagebind_huge.pth`` loads into.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import blemore
from blemore import BlemoreError
from blemore_toolkit.conversion import convert_checkpoint, imagebind
from blemore_toolkit.features.imagebind_frames import OrganisersImageBindFrames

FIXTURES = Path(__file__).parent / "fixtures" / "imagebind"
CHECKPOINT = FIXTURES / "imagebind_tiny.pth"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURES / "reference.npz"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("imagebind") / "imagebind-tiny"
    assert blemore.main(["convert", "imagebind", str(CHECKPOINT), str(out), "--num-attention-heads", "2"]) == 0
    return out


def _embed(folder: Path, pixels: torch.Tensor) -> np.ndarray:
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        return torch.nn.functional.normalize(model(pixel_values=pixels).image_embeds, dim=-1).numpy()


def _image_pixels(folder: Path, images) -> torch.Tensor:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil.from_pretrained(folder, local_files_only=True)(
        list(images), return_tensors="pt").pixel_values


def test_the_converted_folder_reproduces_imagebinds_image_embeddings(converted, reference):
    """ImageBind's image transform + vision branch + postprocessor == the folder's processor + model + L2 norm."""
    embeds = _embed(converted, _image_pixels(converted, reference["images"]))
    assert np.abs(embeds - reference["image_embeds"]).max() <= TOLERANCE


def test_the_organisers_frame_transform_and_model_reproduce_their_per_frame_features(converted, reference):
    pixels = OrganisersImageBindFrames(224)(list(reference["frames"]))["pixel_values"]
    assert tuple(pixels.shape) == (3, 3, 224, 224)
    np.testing.assert_allclose(pixels.double().sum(dim=(1, 2, 3)).numpy(), reference["paper_pixels_checksum"],
                               rtol=1e-6)
    assert np.abs(_embed(converted, pixels) - reference["frame_embeds"]).max() <= TOLERANCE


def test_frames_of_several_sizes_and_long_clips_transform_frame_by_frame(reference):
    transform = OrganisersImageBindFrames(224)
    frames = list(reference["frames"]) * 7 + [reference["images"][0]] + list(reference["frames"])  # 25 frames
    together = transform(frames)["pixel_values"]
    alone = torch.cat([transform([frame])["pixel_values"] for frame in frames])
    assert tuple(together.shape) == (25, 3, 224, 224) and torch.equal(together, alone)


def test_the_folder_is_complete_and_loads_offline(converted):
    from transformers import AutoConfig, AutoImageProcessor

    assert {p.name for p in converted.iterdir()} == {"model.safetensors", "config.json", "preprocessor_config.json",
                                                    "README.md"}
    config = AutoConfig.from_pretrained(converted, local_files_only=True)
    assert config.architectures == ["CLIPVisionModelWithProjection"]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.projection_dim,
            config.patch_size, config.layer_norm_eps, config.hidden_act) == (16, 2, 2, 8, 14, 1e-6, "gelu")
    assert config.embedding_normalization == "l2" and config.converted_from == "imagebind"
    processor = AutoImageProcessor.from_pretrained(converted, local_files_only=True)
    assert processor.size == {"shortest_edge": 224} and processor.resample == 3  # bicubic
    card = (converted / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "CC-BY-NC 4.0" in card and "imagebind_tiny.pth" in card
    assert "converting" not in card  # nothing of the staging folder


def test_the_3d_patch_kernel_over_a_repeated_frame_is_the_summed_2d_kernel():
    """PadIm2Video(repeat, 2) then Conv3d(kernel=stride=(2, p, p)) == Conv2d(kernel=stride=p) with Σ_t W[:, :, t]."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 3, 2, 7, 7, generator=generator, dtype=torch.float64)
    image = torch.randn(2, 3, 28, 21, generator=generator, dtype=torch.float64)
    video = image.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    as_video = torch.nn.functional.conv3d(video, weight, stride=(2, 7, 7)).squeeze(2)
    folded = torch.nn.functional.conv2d(image, imagebind.fold_repeated_frame_kernel(weight), stride=7)
    torch.testing.assert_close(folded, as_video, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mistake", ["swap_norms", "kv_order", "time_slice"])
def test_a_wrong_mapping_is_caught(reference, tmp_path, monkeypatch, mistake):
    """The comparison above is sharp: one mis-mapped weight moves the embeddings far past the tolerance."""
    if mistake == "swap_norms":
        table = [(pattern, target.replace("layer_norm1", "§").replace("layer_norm2", "layer_norm1").replace(
            "§", "layer_norm2") if target else target) for pattern, target in imagebind.RENAME_TABLE]
        monkeypatch.setattr(imagebind, "RENAME_TABLE", table)
    elif mistake == "kv_order":
        real = imagebind.split_in_proj

        def swapped(state):
            out = real(state)
            for key in [k for k in out if ".k_proj." in k]:
                other = key.replace(".k_proj.", ".v_proj.")
                out[key], out[other] = out[other], out[key]
            return out

        monkeypatch.setattr(imagebind, "split_in_proj", swapped)
    else:
        monkeypatch.setattr(imagebind, "fold_repeated_frame_kernel", lambda weight, source=None: 2 * weight[:, :, 0])
    out = convert_checkpoint("imagebind", CHECKPOINT, tmp_path / "wrong", num_attention_heads=2)
    embeds = _embed(out, _image_pixels(out, reference["images"]))
    assert np.abs(embeds - reference["image_embeds"]).max() > 100 * TOLERANCE


def test_other_modalities_are_dropped_by_name_and_unknown_weights_refused(tmp_path):
    state = torch.load(CHECKPOINT, weights_only=True)
    assert any(".audio." in key for key in state) and any(".text." in key for key in state)
    converted = imagebind.convert_state_dict(state)
    assert all(key.startswith(("vision_model.", "visual_projection.")) for key in converted)

    odd = tmp_path / "odd.pth"
    torch.save({**state, "modality_trunks.vision.blocks.0.attn.bias_k": torch.zeros(1, 1, 16)}, odd)
    with pytest.raises(BlemoreError, match=r"odd\.pth: 1 weights this conversion does not know: "
                                           r"modality_trunks\.vision\.blocks\.0\.attn\.bias_k$"):
        convert_checkpoint("imagebind", odd, tmp_path / "odd")
    assert not (tmp_path / "odd").exists()

    no_vision = tmp_path / "audio_only.pth"
    torch.save({k: v for k, v in state.items() if ".vision." not in k}, no_vision)
    with pytest.raises(BlemoreError, match="no ImageBind vision branch"):
        convert_checkpoint("imagebind", no_vision, tmp_path / "none")

    with pytest.raises(BlemoreError, match="does not divide"):
        convert_checkpoint("imagebind", CHECKPOINT, tmp_path / "heads", num_attention_heads=3)

    truncated = tmp_path / "truncated.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("modality_heads.vision.")}, truncated)
    with pytest.raises(BlemoreError, match=r"truncated\.pth: the ImageBind vision branch is incomplete"):
        convert_checkpoint("imagebind", truncated, tmp_path / "truncated")
    assert not (tmp_path / "truncated").exists()


def test_the_whole_imagebind_huge_layout_converts_to_the_huge_clip_vision_model():
    """Every key of the real checkpoint is mapped or dropped by name, and the sizes read from it are imagebind_huge's
    (shapes only: meta tensors, nothing allocated)."""
    import gzip
    import json

    from transformers import CLIPVisionModelWithProjection

    layout = json.loads(gzip.decompress((FIXTURES / "imagebind_huge_layout.json.gz").read_bytes()))
    state = {key: torch.empty(shape, device="meta") for key, shape in layout.items()}
    converted = imagebind.convert_state_dict(state, "imagebind_huge.pth")
    config = imagebind.vision_config(converted)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.projection_dim, config.patch_size, config.image_size) == (1280, 32, 16, 5120, 1024, 14, 224)
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in converted.items()} == expected
    assert sum(value.numel() for value in converted.values()) == 632_076_800  # 632.8M less the folded kernel half


# ---------------------------------------------------------------------------------------------------------------
# blemore features on the converted folder
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_dataset(prepared_dataset, tmp_path_factory):
    """The prepared synthetic dataset cut to its first shard (16 clips), so that every frame stays quick."""
    copy = tmp_path_factory.mktemp("imagebind-features") / "blemore"
    (copy / "data").mkdir(parents=True)
    shutil.copy(prepared_dataset / "README.md", copy / "README.md")
    first = sorted((prepared_dataset / "data").glob("*.parquet"))[0]
    shutil.copy(first, copy / "data" / first.name)
    return copy


def _stored_sequences(folder: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    rows = [row for path in sorted(folder.glob("*.parquet"))
            for row in pq.read_table(path, columns=["clip_id", "sequence"]).to_pylist()]
    return {row["clip_id"]: np.array(row["sequence"], np.float32) for row in rows}


def _decoded_frames(dataset: Path, clip_id: str) -> tuple[np.ndarray, float]:
    import pyarrow.parquet as pq
    from torchcodec.decoders import VideoDecoder

    table = pq.read_table(next((dataset / "data").glob("*.parquet")), columns=["clip_id", "video"]).to_pylist()
    video = next(row["video"]["bytes"] for row in table if row["clip_id"] == clip_id)
    decoder = VideoDecoder(video, dimension_order="NHWC", seek_mode="exact")
    frames = decoder.get_frames_at(indices=list(range(decoder.metadata.num_frames))).data.numpy()
    return frames, float(decoder.metadata.average_fps)


def test_paper_protocol_features_are_the_organisers_per_frame_embeddings(small_dataset, converted):
    """Every frame, the organisers' transform written out by hand here, the model, L2 normalisation."""
    import json

    from blemore_toolkit.features.extraction import extract_features

    result = extract_features(small_dataset, str(converted), config_name="imagebind-paper", protocol="paper",
                              progress=False, workers=1)
    assert result.hidden_size == 8
    provenance = json.loads((result.out_dir / "provenance.json").read_text())
    assert provenance["imagebind_frames"] == "organisers_video" and provenance["frames_per_second"] is None
    assert provenance["encoder_class"] == "CLIPVisionModelWithProjection"
    stored = _stored_sequences(result.out_dir)
    clip_id = sorted(stored)[0]
    frames, _ = _decoded_frames(small_dataset, clip_id)
    assert len(stored[clip_id]) == len(frames)  # every frame

    clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255.0  # C, T, H, W (decord's layout / 255)
    height, width = clip.shape[-2:]
    size = (224, int(np.floor(width / height * 224))) if width >= height else (int(np.floor(height / width * 224)),
                                                                                224)
    clip = torch.nn.functional.interpolate(clip, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(imagebind.CLIP_MEAN)[:, None, None, None]
    std = torch.tensor(imagebind.CLIP_STD)[:, None, None, None]
    clip = (clip - mean) / std
    top, left = int(np.ceil((size[0] - 224) / 2)), int(np.ceil((size[1] - 224) / 2))
    pixels = clip[:, :, top:top + 224, left:left + 224].permute(1, 0, 2, 3)
    expected = _embed(converted, pixels)
    assert np.abs(stored[clip_id] - expected).max() <= TOLERANCE


def test_toolkit_protocol_features_use_imagebinds_image_transform(small_dataset, converted):
    """Sampled frames through the folder's image processor (ImageBind's image transform), the model, L2 norm."""
    import json

    from transformers import AutoImageProcessor

    from blemore_toolkit.features.configs import ExtractionSettings
    from blemore_toolkit.features.extraction import _frame_indices_image, extract_features

    result = extract_features(small_dataset, str(converted), config_name="imagebind-toolkit", progress=False,
                              workers=1)
    provenance = json.loads((result.out_dir / "provenance.json").read_text())
    assert provenance["imagebind_frames"] == "processor" and provenance["frames_per_second"] == 4.0
    stored = _stored_sequences(result.out_dir)
    clip_id = sorted(stored)[0]
    frames, fps = _decoded_frames(small_dataset, clip_id)
    indices = _frame_indices_image(len(frames), fps, ExtractionSettings(encoder="x", kind="image"))
    processor = AutoImageProcessor.from_pretrained(converted, local_files_only=True)
    expected = _embed(converted, processor([frames[i] for i in indices], return_tensors="pt").pixel_values)
    assert np.abs(stored[clip_id] - expected).max() <= TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(list(stored.values())), axis=1), 1.0, atol=1e-5)


def test_other_encoders_keep_their_fingerprints_and_protocols_name_the_transform():
    """Only a converted ImageBind records a frame transform, so features of other encoders stay resumable."""
    from blemore_toolkit.features.configs import ExtractionSettings
    from blemore_toolkit.features.protocols import PAPER_FEATURES, TOOLKIT_FEATURES

    assert "imagebind_frames" not in ExtractionSettings(encoder="x", kind="image").fingerprint_data()
    settings = ExtractionSettings(encoder="x", kind="image", imagebind_frames="organisers_video")
    assert settings.fingerprint_data()["imagebind_frames"] == "organisers_video"
    assert (PAPER_FEATURES.imagebind_frames, TOOLKIT_FEATURES.imagebind_frames) == ("organisers_video", "processor")
