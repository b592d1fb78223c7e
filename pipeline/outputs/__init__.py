"""Shop- and social-ready outputs: presets that place a cutout on a canvas of a set size.

`presets` (product, sticker, post, story, custom) is the one place every surface (CLI, API,
chat, web page) asks for them; `placement`, `shadow` and `sticker` are its parts.
"""
