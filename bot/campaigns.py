"""Campaigns: keyword / postback / m.me-ref triggers that turn a photo into a branded poster.

A campaign's config is JSON in SQLite (editable from the admin page, or loaded from YAML); its
images live in the blob store under campaigns/<slug>/. Counters (participants, photos, posters
delivered) are SQLite rows, so they survive restarts.
"""
from __future__ import annotations

import io
import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.outputs.compose import parse_color
from pipeline.decode import format_megabytes
from pipeline.outputs.poster import PosterLayout, compose_poster
from storage.files import LocalBlobStore
from storage.jobs import SqliteJobStore

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
ASSET_NAMES = ("background", "frame", "logo")
MAX_ASSET_BYTES = 8 * 1024 * 1024
MAX_ASSET_SIDE = 4096
MIN_ASSET_SIDE = 32

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (slug TEXT PRIMARY KEY, config TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS campaign_members (
    slug TEXT NOT NULL, channel TEXT NOT NULL, user_id TEXT NOT NULL, joined_at REAL NOT NULL,
    PRIMARY KEY (slug, channel, user_id));
CREATE TABLE IF NOT EXISTS campaign_counts (
    slug TEXT PRIMARY KEY, photos INTEGER NOT NULL DEFAULT 0, composites INTEGER NOT NULL DEFAULT 0);
"""


class CampaignError(ValueError):
    """A campaign or asset that cannot be accepted; the message says why."""


@dataclass
class Campaign:
    slug: str
    title: str
    active_from: str = ""  # ISO 8601; empty = no limit
    active_to: str = ""
    enabled: bool = True
    keywords: list[str] = field(default_factory=list)  # typed in chat
    postback_values: list[str] = field(default_factory=list)  # LINE postback / rich-menu data
    messenger_refs: list[str] = field(default_factory=list)  # m.me/<page>?ref=<value>
    prompt: str = ""  # what we say when a user joins (default: send a selfie)
    caption: str = ""
    background_color: str = "#ffffff"
    state_ttl_s: int = 1800
    layout: dict[str, Any] = field(default_factory=dict)  # PosterLayout fields
    assets: list[str] = field(default_factory=list)  # which of ASSET_NAMES are uploaded

    def validate(self) -> "Campaign":
        if not SLUG.match(self.slug):
            raise CampaignError("slug: lowercase letters, digits and dashes, up to 40 characters")
        if not self.title.strip():
            raise CampaignError("title is required")
        for stamp in (self.active_from, self.active_to):
            if stamp:
                parse_time(stamp)
        try:
            parse_color(self.background_color)
        except ValueError as error:
            raise CampaignError(f"background_color: {error}") from None
        try:
            self.poster_layout()
        except (TypeError, ValueError) as error:
            raise CampaignError(f"layout: {error}") from None
        self.keywords = [k.strip() for k in self.keywords if k.strip()]
        self.postback_values = [v.strip() for v in self.postback_values if v.strip()]
        self.messenger_refs = [r.strip() for r in self.messenger_refs if r.strip()]
        if not (self.keywords or self.postback_values or self.messenger_refs):
            raise CampaignError("at least one trigger (keyword, postback value or Messenger ref) is required")
        return self

    def poster_layout(self) -> PosterLayout:
        values = dict(self.layout)
        for key in ("canvas", "subject_box", "caption_color"):
            if key in values:
                values[key] = tuple(values[key])
        return PosterLayout(**values)

    def active(self, now: float | None = None) -> bool:
        now = now or time.time()
        if not self.enabled:
            return False
        if self.active_from and now < parse_time(self.active_from):
            return False
        if self.active_to and now > parse_time(self.active_to):
            return False
        return True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Campaign":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CampaignError(f"unknown campaign fields: {', '.join(sorted(unknown))}")
        return cls(**data)


def parse_time(stamp: str) -> float:
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        raise CampaignError(f"not an ISO 8601 time: {stamp!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def validate_asset(data: bytes, name: str) -> bytes:
    """Check an uploaded campaign image; return it re-encoded as PNG (RGBA kept)."""
    if name not in ASSET_NAMES:
        raise CampaignError(f"unknown asset {name!r}; one of {', '.join(ASSET_NAMES)}")
    if len(data) > MAX_ASSET_BYTES:
        raise CampaignError(f"{name}: file over {format_megabytes(MAX_ASSET_BYTES)}")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "JPEG", "WEBP"):
            raise CampaignError(f"{name}: PNG, JPEG or WebP only (got {image.format})")
        if max(image.size) > MAX_ASSET_SIDE or min(image.size) < MIN_ASSET_SIDE:
            raise CampaignError(f"{name}: {image.size[0]}x{image.size[1]} is outside {MIN_ASSET_SIDE}..{MAX_ASSET_SIDE} px")
        image.load()
    except CampaignError:
        raise
    except Exception as error:
        raise CampaignError(f"{name}: not a readable image ({error})") from None
    if name in ("frame", "logo") and image.mode not in ("RGBA", "LA", "P"):
        if name == "frame":
            raise CampaignError("frame: needs transparency (a PNG with an alpha channel) to show the subject")
    buffer = io.BytesIO()
    image.convert("RGBA").save(buffer, "PNG")
    return buffer.getvalue()


class CampaignStore:
    def __init__(self, jobs: SqliteJobStore, blobs: LocalBlobStore) -> None:
        self.jobs = jobs
        self.blobs = blobs
        self.jobs.connection().executescript(SCHEMA)

    def save(self, campaign: Campaign) -> Campaign:
        campaign.validate()
        self.jobs.connection().execute(
            "INSERT INTO campaigns (slug, config, updated_at) VALUES (?, ?, ?) ON CONFLICT (slug) DO UPDATE"
            " SET config = excluded.config, updated_at = excluded.updated_at",
            (campaign.slug, json.dumps(asdict(campaign), ensure_ascii=False), time.time()))
        self.jobs.connection().execute("INSERT OR IGNORE INTO campaign_counts (slug) VALUES (?)", (campaign.slug,))
        return campaign

    def get(self, slug: str) -> Campaign | None:
        row = self.jobs.connection().execute("SELECT config FROM campaigns WHERE slug = ?", (slug,)).fetchone()
        return Campaign.from_dict(json.loads(row[0])) if row else None

    def all(self) -> list[Campaign]:
        rows = self.jobs.connection().execute("SELECT config FROM campaigns ORDER BY slug").fetchall()
        return [Campaign.from_dict(json.loads(row[0])) for row in rows]

    def put_asset(self, campaign: Campaign, name: str, data: bytes) -> None:
        self.blobs.put(f"campaigns/{campaign.slug}/{name}.png", validate_asset(data, name))
        if name not in campaign.assets:
            campaign.assets.append(name)
            self.save(campaign)

    def asset(self, campaign: Campaign, name: str) -> np.ndarray | None:
        if name not in campaign.assets:
            return None
        data = self.blobs.get(f"campaigns/{campaign.slug}/{name}.png")
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), dtype=np.float32) / 255.0

    # --- triggers -------------------------------------------------------------------------------
    def match_keyword(self, text: str) -> Campaign | None:
        words = text.strip().lower()
        for campaign in self.all():
            if campaign.active() and any(k.lower() in words for k in campaign.keywords):
                return campaign
        return None

    def match_postback(self, data: str) -> Campaign | None:
        for campaign in self.all():
            if campaign.active() and (data in campaign.postback_values or data == f"campaign={campaign.slug}"):
                return campaign
        return None

    def match_ref(self, ref: str) -> Campaign | None:
        if not ref:
            return None
        for campaign in self.all():
            if campaign.active() and ref in campaign.messenger_refs:
                return campaign
        return None

    # --- counters -------------------------------------------------------------------------------
    def join(self, campaign: Campaign, channel: str, user_id: str) -> None:
        self.jobs.connection().execute(
            "INSERT OR IGNORE INTO campaign_members (slug, channel, user_id, joined_at) VALUES (?, ?, ?, ?)",
            (campaign.slug, channel, user_id, time.time()))

    def count(self, slug: str, column: str) -> None:
        if column not in ("photos", "composites"):
            raise ValueError(column)
        db = self.jobs.connection()
        db.execute("INSERT OR IGNORE INTO campaign_counts (slug) VALUES (?)", (slug,))
        db.execute(f"UPDATE campaign_counts SET {column} = {column} + 1 WHERE slug = ?", (slug,))

    def counters(self, slug: str) -> dict[str, int]:
        db = self.jobs.connection()
        participants = db.execute("SELECT COUNT(*) FROM campaign_members WHERE slug = ?", (slug,)).fetchone()[0]
        row = db.execute("SELECT photos, composites FROM campaign_counts WHERE slug = ?", (slug,)).fetchone()
        return {"participants": int(participants), "photos": int(row[0]) if row else 0,
                "composites": int(row[1]) if row else 0}

    # --- rendering ------------------------------------------------------------------------------
    def render(self, campaign: Campaign, foreground: np.ndarray, alpha: np.ndarray, font_path: str | None) -> np.ndarray:
        background = self.asset(campaign, "background")
        return compose_poster(
            foreground, alpha, campaign.poster_layout(),
            background[:, :, :3] if background is not None else parse_color(campaign.background_color),
            frame=self.asset(campaign, "frame"), logo=self.asset(campaign, "logo"),
            caption=campaign.caption, font_path=font_path)

    # --- YAML -----------------------------------------------------------------------------------
    def load_yaml(self, path: Path) -> list[Campaign]:
        """Upsert campaigns from a YAML file; asset paths are relative to the file."""
        import yaml

        document = yaml.safe_load(path.read_text()) or {}
        loaded = []
        for entry in document.get("campaigns", []):
            entry = dict(entry)
            asset_paths = {name: entry.pop(name) for name in ASSET_NAMES if name in entry}
            campaign = Campaign.from_dict(entry)
            existing = self.get(campaign.slug)
            campaign.assets = existing.assets if existing else []
            self.save(campaign)
            for name, relative in asset_paths.items():
                self.put_asset(campaign, name, (path.parent / relative).read_bytes())
            loaded.append(campaign)
        return loaded
