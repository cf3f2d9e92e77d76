"""A tiny, randomly initialised video + audio BLEMORE model and its processor: the demo's and the tests' model.

Small enough to train on two CPU cores in a couple of minutes, yet a real composite of the kinds of encoders a
researcher fine-tunes: a VideoMAE transformer over 4 frames of 32×32 pixels (4×4-pixel patches, so that each
token sees one patch of colour and the mean over tokens measures how much of the picture each colour covers) and
a WavLM transformer over the 16 kHz waveform (a 4-layer convolutional front end, 50 frames per second as in the
real WavLM). Nothing is downloaded: the configs are written here and the weights drawn at random.
"""

from __future__ import annotations


def tiny_processor(num_frames: int = 4, image_size: int = 32, max_audio_seconds: float | None = 2.0):
    """The processor matching ``tiny_model``: resize + centre crop to ``image_size``, 16 kHz audio, normalised."""
    from transformers import VideoMAEImageProcessorPil, Wav2Vec2FeatureExtractor

    from blemore_toolkit.modeling import BlemoreProcessor

    video_processor = VideoMAEImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    return BlemoreProcessor(video_processor, feature_extractor, num_frames=num_frames,
                            max_audio_seconds=max_audio_seconds)


def tiny_config(num_frames: int = 4, image_size: int = 32, hidden_size: int = 48, **settings):
    """A ``BlemoreConfig`` with tiny VideoMAE and WavLM encoders; ``settings`` override BlemoreConfig fields."""
    from transformers import VideoMAEConfig, WavLMConfig

    from blemore_toolkit.modeling import BlemoreConfig

    video = VideoMAEConfig(
        image_size=image_size, patch_size=4, num_frames=num_frames, tubelet_size=2, hidden_size=hidden_size,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=2 * hidden_size,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    audio = WavLMConfig(
        hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2, intermediate_size=2 * hidden_size,
        conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 8, 8), conv_bias=True,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_buckets=32, max_bucket_distance=128,
        feat_extract_norm="layer", mask_time_prob=0.0, layerdrop=0.0,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
    )  # fmt: skip
    defaults = dict(fusion="concat", fusion_hidden_size=64, head_hidden_sizes=[64], dropout=0.0)
    return BlemoreConfig(video_config=video, audio_config=audio, **{**defaults, **settings})


def tiny_model(num_frames: int = 4, image_size: int = 32, seed: int = 0, **settings):
    """A freshly initialised ``BlemoreForBlendedEmotionRecognition`` on ``tiny_config`` (deterministic by seed)."""
    import torch

    from blemore_toolkit.modeling import BlemoreForBlendedEmotionRecognition

    torch.manual_seed(seed)
    return BlemoreForBlendedEmotionRecognition(tiny_config(num_frames, image_size, **settings))


def save_tiny_encoders(root, hidden_size: int = 32) -> dict:
    """Tiny random stand-ins for pretrained encoders, saved with their preprocessors: ``{"vit", "videomae", "wavlm"}``
    → folder, for ``blemore features`` in tests and benchmarks (an image, a video and an audio encoder)."""
    from pathlib import Path

    from transformers import (
        VideoMAEConfig,
        VideoMAEImageProcessorPil,
        VideoMAEModel,
        ViTConfig,
        ViTImageProcessorPil,
        ViTModel,
        Wav2Vec2FeatureExtractor,
        WavLMConfig,
        WavLMModel,
    )

    root = Path(root)
    small = dict(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=2 * hidden_size)
    ViTModel(ViTConfig(image_size=32, patch_size=8, **small)).save_pretrained(root / "vit")
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, **small)).save_pretrained(
        root / "videomae")
    VideoMAEImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        root / "videomae")
    # 5·4·4·4 = 320 samples per frame: 50 frames a second, like the real WavLM/HuBERT front ends.
    WavLMModel(WavLMConfig(conv_dim=(16,) * 4, conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 8, 8),
                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_buckets=32,
                           max_bucket_distance=128, feat_extract_norm="layer", **small)
               ).save_pretrained(root / "wavlm")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=True).save_pretrained(root / "wavlm")
    return {name: root / name for name in ("vit", "videomae", "wavlm")}
