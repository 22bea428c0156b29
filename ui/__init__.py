"""The Gradio studio: Blocks layout, thin handlers and the one app-state object."""

from .layout import build_demo, launch_options
from .state import StudioConfig, StudioState

__all__ = ["StudioConfig", "StudioState", "build_demo", "launch_options"]
