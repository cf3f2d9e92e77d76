"""Which encoder ``blemore features --encoder NAME`` means: the families beyond transformers, then transformers.

* ``egemaps``: openSMILE's eGeMAPSv02 (``egemaps.py``);
* ``torchvision:NAME``: a torchvision video model, ``--weights PATH`` a state dict (``torchvision_video.py``);
* ``openface`` with ``--openface-dir DIR``: OpenFace FeatureExtraction CSVs (``openface.py``);
* anything else: a transformers encoder, Hub name or local folder (``load_encoder`` answers None and
  ``extraction`` builds its ``FeatureEncoder``).

Each family answers what ``extraction.write_feature_shard`` asks of an encoder: ``kind``, ``settings``,
``batch_size``, ``probe()`` / ``hidden_size``, ``commit``, ``model``, and either the embedding methods of its kind or
``clip_records(decoded)`` (with ``features_size`` when its clip vector is not the seven statistics); optionally
``source_id()`` (what identifies its input in the resume fingerprint) and ``provenance()`` (its own record).
"""

from __future__ import annotations

from blemore import BlemoreError

#: The encoder name of OpenFace CSVs imported with ``--openface-dir``.
OPENFACE = "openface"
#: The encoder name of openSMILE's eGeMAPSv02.
EGEMAPS = "egemaps"
#: The prefix of torchvision's video models (``torchvision:swin3d_b``).
TORCHVISION_PREFIX = "torchvision:"


def load_encoder(settings, *, protocol: str, device: str, batch_size: int, weights=None, openface_dir=None):
    """The encoder family ``settings.encoder`` (a ``configs.ExtractionSettings``) names: eGeMAPS, a torchvision
    video model or OpenFace CSVs; None for a transformers encoder."""
    if settings.encoder == OPENFACE:
        from blemore_toolkit.features.openface import OpenFaceTable

        if openface_dir is None:
            raise BlemoreError("--encoder openface imports OpenFace CSVs: give their folder with --openface-dir DIR")
        return OpenFaceTable(settings, openface_dir)
    if openface_dir is not None:
        raise BlemoreError(f"--openface-dir imports OpenFace CSVs; it does not go with --encoder {settings.encoder}")
    if weights is not None and not settings.encoder.startswith(TORCHVISION_PREFIX):
        raise BlemoreError(f"--weights PATH is for --encoder torchvision:NAME, not for {settings.encoder} (a "
                           "transformers encoder is a folder or Hub name with its weights)")
    if settings.encoder == EGEMAPS:
        from blemore_toolkit.features.egemaps import EgemapsEncoder

        return EgemapsEncoder(settings)
    if settings.encoder.startswith(TORCHVISION_PREFIX):
        from blemore_toolkit.features.torchvision_video import TorchvisionVideoEncoder

        return TorchvisionVideoEncoder(settings, protocol=protocol, weights=weights, device=device,
                                       batch_size=batch_size)
    return None


__all__ = ["EGEMAPS", "OPENFACE", "TORCHVISION_PREFIX", "load_encoder"]
