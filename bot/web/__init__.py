"""The web front door, apart from the chat channels: the upload page (page, page_jobs, static/) and the
remove.bg-shaped API (api, api_outputs, api_titles)."""
