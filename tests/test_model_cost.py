"""resnet_ablation.model_cost against the published arithmetic of the nets it measures."""

from __future__ import annotations

import pytest

from resnet_ablation import model_cost, models


@pytest.mark.slow
@pytest.mark.parametrize("name, num_classes, size, giga_multiply_adds", [
    ("resnet34", 1000, 224, 3.66),  # torchvision's model card: 3.66 GFLOPS (multiply-adds)
    ("resnet50", 1000, 224, 4.09),  # torchvision (v1.5, stride on the 3x3): 4.09
    ("resnet18", 1000, 224, 1.81),  # torchvision: 1.81
    ("cifar_resnet20", 10, 32, 0.0406),  # the paper's CIFAR nets: 41 M for 20 layers
    ("cifar_resnet56", 10, 32, 0.1255),  # 125 M for 56 layers
])
def test_forward_flops_match_the_published_multiply_adds(name, num_classes, size,
                                                         giga_multiply_adds):
    model = models.build_model(name, num_classes, (size, size, 3))
    assert model_cost.forward_flops(model) / 2e9 == pytest.approx(giga_multiply_adds, rel=0.005)
    assert model_cost.train_flops(model) == 3 * model_cost.forward_flops(model)


@pytest.mark.slow
def test_a_plain_twin_costs_its_twin_minus_the_projections():
    """plain50 has resnet50's main path and none of its four 1x1 projection shortcuts."""
    residual = models.build_model("resnet50", 1000, (224, 224, 3))
    plain = models.build_model("plain50", 1000, (224, 224, 3))
    projections = sum(model_cost.layer_forward_flops(layer) for layer in residual.layers
                      if "_shortcut" in layer.name)
    assert projections > 0
    assert model_cost.forward_flops(plain) == model_cost.forward_flops(residual) - projections


@pytest.mark.slow
def test_activation_elements_grow_with_the_image_and_fraction_of_peak_is_a_ratio():
    small = model_cost.activation_elements(models.build_model("resnet34", 10, (112, 112, 3)))
    large = model_cost.activation_elements(models.build_model("resnet34", 10, (224, 224, 3)))
    assert 3.9 < large / small < 4.1  # every feature map has 4x the pixels, the head aside
    assert model_cost.fraction_of_peak(10.0, 2e9, 1e11) == pytest.approx(0.2)
