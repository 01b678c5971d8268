"""Face-parsing class schema (CelebAMask-HQ) and synthetic faces."""

#: The 19 CelebAMask-HQ classes in the official order. ``l_*`` is the subject's
#: left, which appears on the image's right.
CELEBAMASK_CLASSES = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
    "neck", "cloth",
)
