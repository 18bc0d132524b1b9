"""slt-pipe's 'spamo' visual block against SpaMo's block rebuilt here from its description.

The reference below is written from shared/reference.md ("Visual block, exactly as SpaMo
builds it") with plain torch modules and a per-sample Python loop, sharing no code with
train/fusion.py; its weights are copied into slt-pipe's block through an explicit name map.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from train.fusion import SPAMO_MIN_LEN, SpamoVisualBlock, build_visual_block, spamo_lengths

DS, DM, H, OUT = 24, 12, 16, 20


class ReferenceSpamo(nn.Module):
    """SpaMo's block per the reference: Linear per stream to inter_hidden, joint fusion along
    time (valid spatial rows, then valid motion rows, zero-padded batch), K5 P2 K5 P2 with
    Conv1d(padding 0) + plain BatchNorm1d + ReLU and MaxPool1d(2, ceil_mode=False), then
    Linear(H -> out), GELU, Linear(out -> out)."""

    def __init__(self):
        super().__init__()
        self.lin_spatial = nn.Linear(DS, H)
        self.lin_motion = nn.Linear(DM, H)
        self.conv_a, self.bn_a = nn.Conv1d(H, H, 5, padding=0), nn.BatchNorm1d(H)
        self.conv_b, self.bn_b = nn.Conv1d(H, H, 5, padding=0), nn.BatchNorm1d(H)
        self.pool = nn.MaxPool1d(2, ceil_mode=False)
        self.mlp_in, self.mlp_out = nn.Linear(H, OUT), nn.Linear(OUT, OUT)

    def forward(self, spatial: list[torch.Tensor], motion: list[torch.Tensor]):
        joint = [torch.cat([self.lin_spatial(s), self.lin_motion(m)], 0) for s, m in zip(spatial, motion)]
        lengths = [len(j) for j in joint]
        x = pad_sequence(joint, batch_first=True).transpose(1, 2)  # [B, H, L], zeros past each sample
        x = self.pool(torch.relu(self.bn_a(self.conv_a(x))))
        x = self.pool(torch.relu(self.bn_b(self.conv_b(x))))
        y = self.mlp_out(nn.functional.gelu(self.mlp_in(x.transpose(1, 2))))
        out_lengths = []
        for t in lengths:  # K5: -4, P2: floor half, twice
            t = (t - 4) // 2
            t = (t - 4) // 2
            out_lengths.append(t)
        return y, torch.tensor(out_lengths)


NAME_MAP = {
    "lin_spatial": "spatio_proj", "lin_motion": "spatiotemp_proj",
    "conv_a": "temporal_encoder.temporal_conv.0", "bn_a": "temporal_encoder.temporal_conv.1",
    "conv_b": "temporal_encoder.temporal_conv.4", "bn_b": "temporal_encoder.temporal_conv.5",
    "mlp_in": "fusion_proj.0", "mlp_out": "fusion_proj.2",
}
"""Reference module -> slt-pipe module (the latter are SpaMo's own names)."""


def copied_block(ref: ReferenceSpamo) -> SpamoVisualBlock:
    block = SpamoVisualBlock(DS, DM, H, OUT)
    state = {}
    for k, v in ref.state_dict().items():
        mod, rest = k.split(".", 1)
        state[f"{NAME_MAP[mod]}.{rest}"] = v.clone()
    missing, unexpected = block.load_state_dict(state, strict=False)
    assert not unexpected and sorted(missing) == ["motion_mean", "motion_std", "spatial_mean", "spatial_std"]
    return block


def padded(seqs: list[torch.Tensor], garbage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch whose padding holds `garbage` (it must never reach the result)."""
    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width, seqs[0].size(1)), garbage)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return x, torch.arange(width)[None] < torch.tensor([len(s) for s in seqs])[:, None]


@pytest.mark.parametrize("spatial_lens,motion_lens", [([40, 23, 17], [4, 2, 1]), ([16, 61], [1, 6]), ([30], [3])])
@pytest.mark.parametrize("train_mode", [True, False])
def test_spamo_block_equals_reference(spatial_lens, motion_lens, train_mode):
    torch.manual_seed(0)
    ref = ReferenceSpamo()
    with torch.no_grad():  # non-trivial BatchNorm state, so eval mode tests the running statistics too
        for bn in (ref.bn_a, ref.bn_b):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    block = copied_block(ref)
    ref.train(train_mode)
    block.train(train_mode)
    sp = [torch.randn(t, DS) for t in spatial_lens]
    mo = [torch.randn(c, DM) for c in motion_lens]
    y_ref, len_ref = ref(sp, mo)
    (xs, ms), (xm, mm) = padded(sp, 1e3), padded(mo, -1e3)
    y, lengths = block.sequence(xs, ms, xm, mm)
    assert torch.equal(lengths, len_ref)
    assert torch.equal(lengths, spamo_lengths(torch.tensor(spatial_lens) + torch.tensor(motion_lens)))
    assert y.shape == y_ref.shape
    for i, n in enumerate(len_ref.tolist()):
        torch.testing.assert_close(y[i, :n], y_ref[i, :n], atol=1e-5, rtol=1e-5)
    if train_mode:  # plain BatchNorm over the padded batch: the same running statistics afterwards
        torch.testing.assert_close(block.temporal_encoder.temporal_conv[1].running_mean, ref.bn_a.running_mean)
        torch.testing.assert_close(block.temporal_encoder.temporal_conv[5].running_var, ref.bn_b.running_var)
    # the pooled z is the mean over the valid output steps
    z = block(xs, ms, xm, mm)
    z_ref = torch.stack([y_ref[i, :n].mean(0) for i, n in enumerate(len_ref.tolist())])
    torch.testing.assert_close(z, z_ref, atol=1e-5, rtol=1e-5)


def test_spamo_names_lengths_and_pooling():
    block = SpamoVisualBlock(DS, DM, H, OUT)
    keys = set(block.state_dict())
    for k in ("spatio_proj.weight", "spatiotemp_proj.bias", "temporal_encoder.temporal_conv.0.weight",
              "temporal_encoder.temporal_conv.1.running_var", "temporal_encoder.temporal_conv.4.weight",
              "temporal_encoder.temporal_conv.5.num_batches_tracked", "fusion_proj.0.weight", "fusion_proj.2.bias"):
        assert k in keys, k
    assert block.fusion_proj[0].in_features == H and block.fusion_proj[0].out_features == OUT  # in -> out, then out -> out
    assert block.temporal_encoder.temporal_conv[0].padding == (0,) and not block.temporal_encoder.temporal_conv[3].ceil_mode
    # T -> floor((floor((T - 4) / 2) - 4) / 2)
    assert spamo_lengths(torch.tensor([16, 17, 19, 20, 21, 100, 475])).tolist() == [1, 1, 1, 2, 2, 22, 115]
    # the paper profile's block: width 768, SONAR's 1024 out
    paper = build_visual_block("spamo", 2048, 1024, 1024, hidden=768)
    assert paper.spatio_proj.out_features == 768 and paper.fusion_proj[2].out_features == 1024
    assert paper.spec()["pooling"] == "mean"
    # max pooling is the masked max of the same sequence
    torch.manual_seed(1)
    mx = SpamoVisualBlock(DS, DM, H, OUT, pooling="max").eval()
    xs, ms = padded([torch.randn(30, DS), torch.randn(18, DS)], 0.0)
    xm, mm = padded([torch.randn(3, DM), torch.randn(1, DM)], 0.0)
    y, lengths = mx.sequence(xs, ms, xm, mm)
    expected = torch.stack([y[i, :n].amax(0) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(mx(xs, ms, xm, mm), expected)
    with pytest.raises(ValueError, match="pooling"):
        SpamoVisualBlock(DS, DM, H, OUT, pooling="attention")


def test_spamo_short_sequences_are_padded_to_the_minimum():
    """Fewer than 16 fused steps: zero steps up to 16, one valid output step, same z alone or in a batch."""
    torch.manual_seed(2)
    block = SpamoVisualBlock(DS, DM, H, OUT).eval()
    short_s, short_m = torch.randn(5, DS), torch.randn(1, DM)
    y, lengths = block.sequence(short_s[None], None, short_m[None], None)
    assert lengths.tolist() == [1] and y.shape[1] == spamo_lengths(torch.tensor(SPAMO_MIN_LEN)).item()
    z_alone = block(short_s[None], None, short_m[None], None)
    assert torch.isfinite(z_alone).all()
    xs, ms = padded([short_s, torch.randn(50, DS)], 7.0)
    xm, mm = padded([short_m, torch.randn(5, DM)], 7.0)
    z = block(xs, ms, xm, mm)
    torch.testing.assert_close(z[0], z_alone[0], atol=1e-5, rtol=1e-5)
    # training mode too (BatchNorm over the padded batch), with gradients to the projections
    block.train()
    block(xs, ms, xm, mm).sum().backward()
    assert block.spatio_proj.weight.grad is not None and torch.isfinite(block.spatio_proj.weight.grad).all()
