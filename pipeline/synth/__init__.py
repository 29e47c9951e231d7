"""The synthetic flight generator behind ``aerobase synth``: a known scene, rendered exactly.

``render_flight(out_dir, SynthOptions(...))`` writes a flight batch (JPEG images
with EXIF GPS and DJI XMP, a MAVLink .tlog, an ODM gcp_list.txt) and the ground
truth that measures every error of a reconstruction (``truth/``).
"""

from pipeline.synth.generate import ShotTruth, SynthResult, render_flight
from pipeline.synth.presets import PRESETS, FlightPreset, SynthOptions

__all__ = ["PRESETS", "FlightPreset", "ShotTruth", "SynthOptions", "SynthResult", "render_flight"]
