"""The realcxr split of a patient group, as trainer/src/data/realcxr.rs `split_of` computes it
(FNV-1a of the group's name: 70% train, 15% validate, 15% test), for the analysis scripts."""


def split_of(group):
    h = 0xCBF29CE484222325
    for b in group.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    m = h % 100
    return "train" if m < 70 else "validate" if m < 85 else "test"
