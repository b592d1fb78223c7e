-- bot/campaigns.py's tables (its own CREATE TABLE IF NOT EXISTS then finds them in place).
CREATE TABLE campaigns (slug TEXT PRIMARY KEY, config TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL);
CREATE TABLE campaign_members (
    slug TEXT NOT NULL, channel TEXT NOT NULL, user_id TEXT NOT NULL, joined_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (slug, channel, user_id));
CREATE TABLE campaign_counts (
    slug TEXT PRIMARY KEY, photos INTEGER NOT NULL DEFAULT 0, composites INTEGER NOT NULL DEFAULT 0);
