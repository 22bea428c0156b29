"""Latent sizes of one stage."""

from dataclasses import dataclass


@dataclass(frozen=True)
class LatentGeometry:
    """Latent sizes of one stage."""

    frames: int  # latent video frames: (num_frames - 1) // 8 + 1
    height: int  # latent rows: height // 32
    width: int  # latent columns: width // 32
    audio_frames: int  # latent audio frames: round(num_frames / frame_rate * 25)
    frame_rate: float

    @property
    def tokens_per_frame(self) -> int:
        """Video tokens in one latent frame."""
        return self.height * self.width
