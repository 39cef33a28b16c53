"""The language model's output layer: full and adaptive softmax (ulmfit/model/softmax.py)."""
import pytest
import torch
import torch.nn.functional as F

from ulmfit.errors import UlmfitError
from ulmfit.model import LanguageModel, OutputLayer, cluster_bounds, make_config
from ulmfit.stages.lm import map_lm_vocab

V, D = 50, 8


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def trained_like(layer: OutputLayer) -> OutputLayer:
    """Non-zero biases and cluster entries, so that every term of the formulas matters."""
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return layer


def test_cluster_bounds_keep_the_cutoffs_inside_the_vocabulary():
    assert cluster_bounds(30000, (2000, 10000)) == [2000, 10000, 30000]
    assert cluster_bounds(8000, (2000, 10000)) == [2000, 8000]
    assert cluster_bounds(1500, (2000, 10000)) == [1500]
    assert cluster_bounds(100, ()) == [100]


@pytest.mark.parametrize("cutoffs", [(), (10,), (10, 30), (10, 30, 80)])
def test_log_probabilities_are_a_distribution_over_the_vocabulary(cutoffs):
    layer = trained_like(OutputLayer(D, V, cutoffs))
    hidden = torch.randn(3, D)
    every_word = layer.nll(hidden.repeat_interleave(V, 0), torch.arange(V).repeat(3)).view(3, V)
    torch.testing.assert_close(torch.logsumexp(-every_word, dim=1), torch.zeros(3), atol=1e-5, rtol=0)


def test_full_softmax_is_the_cross_entropy_of_the_linear_decoder():
    layer = trained_like(OutputLayer(D, V))
    hidden, target = torch.randn(4, 7, D), torch.randint(0, V, (4, 7))
    expected = F.cross_entropy((hidden @ layer.weight.T + layer.bias).flatten(0, 1), target.flatten(),
                               reduction="none").view(4, 7)
    torch.testing.assert_close(layer.nll(hidden, target), expected)


def test_a_rare_word_is_its_cluster_probability_times_its_probability_within_the_cluster():
    layer = trained_like(OutputLayer(D, V, (10, 30)))
    h, w = torch.randn(D), 17  # in the first cluster: ids 10..29
    head = torch.log_softmax(torch.cat([layer.weight[:10] @ h + layer.bias[:10],
                                        layer.cluster_weight @ h + layer.cluster_bias]), 0)
    within = torch.log_softmax(layer.weight[10:30] @ h + layer.bias[10:30], 0)
    torch.testing.assert_close(layer.nll(h[None], torch.tensor([w])), -(head[10] + within[w - 10])[None])
    head_word = 3
    torch.testing.assert_close(layer.nll(h[None], torch.tensor([head_word])), -head[head_word][None])


def test_a_cluster_gets_gradients_only_from_positions_whose_target_is_in_it():
    layer = trained_like(OutputLayer(D, V, (10, 30)))
    layer.nll(torch.randn(6, D), torch.tensor([1, 2, 3, 12, 15, 4])).sum().backward()
    grad = layer.weight.grad.abs().sum(1)
    assert (grad[:10] > 0).all() and (grad[10:30] > 0).all()
    assert (grad[30:] == 0).all()  # no target in the last cluster: its rows were never computed


def test_unused_cutoffs_keep_their_parameters_so_shapes_do_not_depend_on_the_vocabulary():
    small = OutputLayer(D, 20, (10, 30))
    assert small.bounds == [10, 20] and small.cluster_weight.shape == (2, D)
    every_word = small.nll(torch.randn(1, D).expand(20, D), torch.arange(20))
    torch.testing.assert_close(torch.logsumexp(-every_word, 0), torch.tensor(0.0), atol=1e-5, rtol=0)


def test_bf16_autocast_keeps_the_losses_float32_and_close():
    layer = trained_like(OutputLayer(D, V, (10, 30)))
    hidden, target = torch.randn(64, D), torch.randint(0, V, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer.nll(hidden, target)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, layer.nll(hidden, target), atol=0.1, rtol=0.05)


def test_the_language_model_ties_every_word_row_to_the_embedding():
    lm = LanguageModel(make_config("tiny", V, softmax_cutoffs=(10, 30)))
    assert lm.decoder.weight is lm.encoder.embedding.weight
    assert list(lm.state_dict())[-4:] == ["decoder.weight", "decoder.bias", "decoder.cluster_weight",
                                           "decoder.cluster_bias"]
    flat = [p for group in lm.layer_groups() for p in group]
    assert sorted(map(id, flat)) == sorted(map(id, lm.parameters()))


def test_fine_tuning_maps_the_word_rows_onto_a_smaller_vocabulary_with_fewer_clusters():
    lm = LanguageModel(make_config("tiny", V, softmax_cutoffs=(20, 40)))
    trained_like(lm.decoder)
    old_itos = [f"t{i}" for i in range(V)]
    new_itos = old_itos[:9] + old_itos[45:] + ["new"] + old_itos[9:30]
    state = map_lm_vocab(lm.state_dict(), old_itos, new_itos)
    small = LanguageModel(make_config("tiny", len(new_itos), softmax_cutoffs=(20, 40)))
    small.load_state_dict(state)
    assert small.decoder.bounds == [20, len(new_itos)]
    torch.testing.assert_close(small.decoder.weight[9], lm.decoder.weight[45])
    torch.testing.assert_close(small.decoder.cluster_weight, lm.decoder.cluster_weight)


@pytest.mark.parametrize("cutoffs", [(0,), (30, 10), (10, 10)])
def test_cutoffs_must_increase(cutoffs):
    with pytest.raises(UlmfitError, match="softmax_cutoffs"):
        make_config("tiny", V, softmax_cutoffs=cutoffs)
