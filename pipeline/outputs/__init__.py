"""Everything made from a finished cutout: the deliverables users receive.

`compose` (RGBA cutouts, composites, crops, shadows), `render` (encoded files: PNG, JPEG, masks,
previews), `poster` (campaign posters), and the presets every surface (CLI, API, chat, web page)
asks for in one place: `presets` (product, sticker, post, story, custom) with its parts
`placement`, `shadow`, `sticker` and `region` (remove.bg's roi/scale/position).
"""
