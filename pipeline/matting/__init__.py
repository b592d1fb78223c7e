"""Matting: alpha where the segmentation mask is unsure, and the colours under it.

- trimap.py: where the model is sure (0 / 1) and where alpha is solved (the unknown band);
- closed_form.py: closed-form matting in that band, with a weak prior towards the model's mask;
- system.py: the closed-form system on the unknown pixels (shared with pipeline/editing's solve);
- knn.py: KNN matting, blended in when a trimap comes without a prior;
- foreground.py: the subject's own colours in semi-transparent pixels.

The torch twins live in pipeline/torch_path/.
"""
