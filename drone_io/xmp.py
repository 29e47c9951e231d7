"""DJI-style XMP (``drone-dji:``) read from the raw XMP packet of an image."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PACKET_START = b"<x:xmpmeta"
_PACKET_END = b"</x:xmpmeta>"
# Attribute form: drone-dji:Name="+1.23"; element form: <drone-dji:Name>+1.23</drone-dji:Name>
_ATTR = re.compile(rb"drone-dji:(\w+)\s*=\s*\"([^\"]*)\"")
_ELEM = re.compile(rb"<drone-dji:(\w+)>([^<]*)</drone-dji:\1>")


@dataclass(frozen=True)
class DjiXmp:
    """The DJI XMP fields Aerobase uses; None where absent."""

    absolute_altitude: float | None = None
    relative_altitude: float | None = None
    gimbal_yaw: float | None = None
    gimbal_pitch: float | None = None
    gimbal_roll: float | None = None
    flight_yaw: float | None = None
    flight_pitch: float | None = None
    flight_roll: float | None = None
    rtk_flag: int | None = None  # 50 fixed, 34 float, 16 single, 0 none
    rtk_std_lat: float | None = None
    rtk_std_lon: float | None = None
    rtk_std_hgt: float | None = None
    gps_latitude: float | None = None  # some models repeat GPS in XMP
    gps_longitude: float | None = None


_FIELDS = {
    "AbsoluteAltitude": "absolute_altitude",
    "RelativeAltitude": "relative_altitude",
    "GimbalYawDegree": "gimbal_yaw",
    "GimbalPitchDegree": "gimbal_pitch",
    "GimbalRollDegree": "gimbal_roll",
    "FlightYawDegree": "flight_yaw",
    "FlightPitchDegree": "flight_pitch",
    "FlightRollDegree": "flight_roll",
    "RtkFlag": "rtk_flag",
    "RtkStdLat": "rtk_std_lat",
    "RtkStdLon": "rtk_std_lon",
    "RtkStdHgt": "rtk_std_hgt",
    "GpsLatitude": "gps_latitude",
    "GpsLongitude": "gps_longitude",
    "GpsLongtitude": "gps_longitude",  # DJI's own misspelling on some models
}


def extract_xmp_packet(data: bytes) -> bytes | None:
    """The first XMP packet in a file's bytes, or None."""
    i = data.find(_PACKET_START)
    if i < 0:
        return None
    j = data.find(_PACKET_END, i)
    return data[i : j + len(_PACKET_END)] if j >= 0 else None


def parse_dji_xmp(packet: bytes | None) -> DjiXmp:
    """Parse the ``drone-dji:`` fields of an XMP packet; unknown fields are ignored."""
    if not packet:
        return DjiXmp()
    values: dict[str, float | int] = {}
    for rx in (_ATTR, _ELEM):
        for key, raw in rx.findall(packet):
            name = _FIELDS.get(key.decode("ascii", "replace"))
            if name is None or name in values:
                continue
            try:
                num = float(raw.decode("ascii", "replace").strip())
            except ValueError:
                continue
            values[name] = int(num) if name == "rtk_flag" else num
    return DjiXmp(**values)  # type: ignore[arg-type]


def build_dji_xmp(fields: dict[str, float]) -> bytes:
    """A minimal DJI-style XMP packet (attribute form) for the given drone-dji fields."""
    attrs = "\n".join(f'   drone-dji:{k}="{v:+.2f}"' for k, v in fields.items())
    text = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about="DJI Meta Data"\n'
        '   xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/"\n'
        f"{attrs}>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>"
    )
    return text.encode("ascii")
