"""Tiny VideoMAE and WavLM configs (a few kB of random weights) that BLEMORE model variants are built from in the
model-convention tests and in the adapter that runs transformers' common tests."""

from transformers import VideoMAEConfig, WavLMConfig

NUM_FRAMES, IMAGE_SIZE, PATCH_SIZE, TUBELET_SIZE = 4, 16, 8, 2
#: Audio samples per clip in the test inputs.
NUM_SAMPLES = 1600
#: Tokens the tiny VideoMAE makes of a clip.
VIDEO_TOKENS = (NUM_FRAMES // TUBELET_SIZE) * (IMAGE_SIZE // PATCH_SIZE) ** 2


def video_config() -> VideoMAEConfig:
    return VideoMAEConfig(
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, num_frames=NUM_FRAMES, tubelet_size=TUBELET_SIZE,
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    )  # fmt: skip


def audio_config() -> WavLMConfig:
    return WavLMConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        num_buckets=8, max_bucket_distance=32, feat_extract_norm="layer", layerdrop=0.0,
    )  # fmt: skip
