"""Categories never share a colour, however many levels a feature has."""

from clinval.plots import PALETTE, colours


def test_the_palette_serves_few_levels_and_viridis_many():
    assert colours(3) == list(PALETTE[:3])
    many = colours(13)
    assert len(many) == 13 and len({tuple(c) for c in many}) == 13
