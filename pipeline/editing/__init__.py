"""Fixing a cutout by hand: the editing engine (`edit`: marks -> alpha), tap regions and stroke
footprints (`regions`), and the matting solve around edited edges (`scribble_matte`)."""
