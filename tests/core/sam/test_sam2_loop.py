"""SAM 2.1 in the loop: behind SAM's interface it prompts as Meta's own predictors do, micro_sam's 2D
functions and the training run take it, and Shift+S propagates with its video predictor's memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.sam.hiera_architecture import TINY_HIERA
from napari_sam_peft.core.sam.preprocessing import embedding_channels
from napari_sam_peft.core.sam.sam2_as_sam import SamShapedSam2, pack_features, unpack_features
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.run import run_job
from napari_sam_peft.core.volume.memory_propagation import _inference_state, video_predictor_for
from napari_sam_peft.core.volume.propagation import propagate
from napari_sam_peft.core.volume.slice_features import VolumeFeatures


def _image(seed: int = 0, shape=(128, 128)) -> np.ndarray:
    return (np.random.default_rng(seed).random((*shape, 3)) * 255).astype(np.uint8)


def test_packing_the_three_feature_maps_loses_nothing():
    embedding, s0, s1 = torch.rand(2, 32, 8, 8), torch.rand(2, 4, 32, 32), torch.rand(2, 8, 16, 16)
    packed = pack_features(embedding, [s0, s1])
    assert packed.shape == (2, 128, 8, 8)
    back, (b0, b1) = unpack_features(packed, 32)
    assert torch.equal(back, embedding) and torch.equal(b0, s0) and torch.equal(b1, s1)


def test_sams_predictor_on_sam2_gives_what_sam2s_own_image_predictor_gives(tiny_sam2):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = _image()  # square: SAM 2 stretches, SAM pads; on a square image they are the same
    ours = SamPredictor(tiny_sam2)
    ours.set_image(image)
    assert ours.features.shape == (1, embedding_channels(tiny_sam2), 8, 8)
    meta = SAM2ImagePredictor(tiny_sam2)
    meta._bb_feat_sizes = [(32, 32), (16, 16), (8, 8)]  # Meta's are for a 1024 px input
    meta.set_image(image)
    prompts = [
        {"point_coords": np.array([[40.0, 50.0], [90.0, 20.0]]), "point_labels": np.array([1, 0])},
        {"box": np.array([10.0, 12.0, 70.0, 90.0])},
    ]
    for prompt in prompts:
        a = ours.predict(**prompt, multimask_output=True, return_logits=True)
        b = meta.predict(**prompt, multimask_output=True, return_logits=True)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5)


def test_micro_sams_prompt_functions_and_embeddings_run_on_sam2(tiny_sam2):
    from micro_sam.prompt_based_segmentation import segment_from_box, segment_from_points
    from micro_sam.util import precompute_image_embeddings

    predictor = SamPredictor(tiny_sam2)
    image = _image(1, (100, 70))[..., 0]
    embeddings = precompute_image_embeddings(predictor, image, ndim=2, verbose=False)
    assert embeddings["features"].shape == (1, 128, 8, 8)
    by_box = segment_from_box(predictor, np.array([10, 10, 60, 50]), image_embeddings=embeddings)
    by_point = segment_from_points(predictor, np.array([[30, 30]]), np.array([1]), image_embeddings=embeddings)
    assert by_box.shape == by_point.shape == (1, 100, 70)


def test_an_adapter_trained_on_sam2_changes_only_what_it_trains(tiny_sam2, tmp_path):
    sample = make_sample("cells", seed=1)
    store = AnnotationStore.create(tmp_path / "cells.sampeft.zarr")
    store.add_labels(sample.image, sample.labels, split="train")
    base = tmp_path / "tiny_sam2.pt"
    torch.save({"model": tiny_sam2.state_dict()}, base)
    events = []
    job = TrainingJob(
        store=str(store.path), model=str(base), preset="late_lora", steps=2, out=str(tmp_path / "a.safetensors")
    )
    record = run_job(job, events.append)
    assert record.status == "completed" and (tmp_path / "a.safetensors").exists()
    assert [type(e).__name__ for e in events][-1] == "Finished"


def _volume_features(model, volume) -> tuple[VolumeFeatures, torch.Tensor]:
    """Stored embeddings of each slice (as the annotator keeps them) and the preprocessed slices."""
    from napari_sam_peft.core.sam.preprocessing import model_input

    predictor = SamPredictor(model)
    features = VolumeFeatures(len(volume))
    inputs = []
    for z, plane in enumerate(volume):
        predictor.set_image(np.stack([plane] * 3, -1))
        sizes = {"input_size": predictor.input_size, "original_size": predictor.original_size}
        features.put(z, {"features": predictor.features.numpy(), **sizes})
        inputs.append(model_input(model, plane)[0])
    return features, torch.stack(inputs)


def test_the_video_predictor_on_stored_embeddings_gives_what_meta_s_gives_embedding_the_slices(tiny_sam2):
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    class MetasVideoPredictor(SAM2VideoPredictor):  # Meta's _get_image_feature: it embeds each frame
        forward_image = SamShapedSam2.forward_image

    volume = (np.random.default_rng(2).random((6, 128, 128)) * 255).astype(np.uint8)
    features, frames = _volume_features(tiny_sam2, volume)
    seed = np.zeros((128, 128), bool)
    seed[40:80, 30:90] = True
    logits = {}
    for name, predictor in [("ours", video_predictor_for(tiny_sam2)), ("meta", video_predictor_for(tiny_sam2))]:
        if name == "meta":
            predictor.__class__ = MetasVideoPredictor
        state = _inference_state(features, 128, torch.device("cpu"))  # init_state would read JPEG files
        state["images"] = frames
        with torch.inference_mode():
            predictor.add_new_mask(state, frame_idx=2, obj_id=1, mask=torch.from_numpy(seed))
            out = {z: x.clone() for z, _, x in predictor.propagate_in_video(state)}
            back = predictor.propagate_in_video(state, start_frame_idx=2, reverse=True)
            out |= {z: x.clone() for z, _, x in back}
        logits[name] = out
    assert sorted(logits["ours"]) == list(range(6))
    for z in range(6):
        torch.testing.assert_close(logits["ours"][z], logits["meta"][z], rtol=0, atol=1e-4)


def test_shift_s_on_sam2_stops_two_empty_slices_after_the_object_in_each_direction(tiny_sam2):
    volume = (np.random.default_rng(3).random((12, 96, 128)) * 255).astype(np.uint8)
    features, _ = _volume_features(tiny_sam2, volume)
    seed = np.zeros((96, 128), bool)
    seed[30:60, 40:90] = True
    reached = []
    result = propagate(SamPredictor(tiny_sam2), features, {5: seed}, progress=lambda done, n: reached.append(done))
    # the random model finds nothing beyond the seed: 2 empty slices forward (6, 7), 2 backward (4, 3)
    assert result.n_slices == 1 and result.mask[5].sum() == seed.sum()
    assert result.mask.shape == (12, 96, 128)
    assert max(reached[:-1]) < 12  # slices 0-2 and 8-11 were never run


def test_evaluate_runs_sam2_on_images_and_volumes_with_the_mask_generator(tiny_sam2, tmp_path, capsys):
    import json

    from napari_sam_peft.cli import main
    from napari_sam_peft.core.data.sample_volume import make_volume

    store = AnnotationStore.create(tmp_path / "mixed.sampeft.zarr")
    sample = make_sample("nuclei", seed=2, shape=(96, 96))
    store.add_labels(sample.image, sample.labels, split="val")
    volume = make_volume(seed=1, shape=(8, 64, 64))
    store.add_labels(volume.image, volume.labels, split="val")
    base = tmp_path / "tiny_sam2.pt"
    torch.save({"model": tiny_sam2.state_dict()}, base)
    assert main(["evaluate", str(store.path), "--model", str(base), "--iterations", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    scores = report["scores"] if "scores" in report else report
    assert {"box", "point", "ais", "volume"} <= set(scores)


def test_a_separate_process_loads_an_hvit_model_by_its_name(tiny_sam2):
    from napari_sam_peft.core.sam.loading import LoadedModel, model_identity
    from napari_sam_peft.core.training.job import model_argument

    loaded = LoadedModel(tiny_sam2, model_identity(tiny_sam2, "hvit_t"), TINY_HIERA, source="hvit_t")
    assert model_argument(loaded) == "hvit_t"  # the Finetune dock's run loads it by name


def test_a_copy_of_a_sam2_model_embeds_with_its_own_decoder_projections(tiny_sam2):
    import copy

    twin = copy.deepcopy(tiny_sam2)
    with torch.no_grad():
        twin.sam_mask_decoder.conv_s0.weight.mul_(2)  # the copy's high-resolution projection only
        x = torch.rand(1, 3, 128, 128)
        ours, theirs = twin.image_encoder(x), tiny_sam2.image_encoder(x)
    assert twin.image_encoder._owner() is twin
    assert torch.equal(ours[:, :64], theirs[:, :64])  # the 1/16 embedding and the 1/8 map: unchanged
    assert not torch.equal(ours[:, 64:], theirs[:, 64:])  # the 1/4 map: the copy's conv_s0


def test_stop_ends_a_sam2_propagation_and_changes_nothing(tiny_sam2):
    from napari_sam_peft.core.volume.propagation import StoppedError

    volume = (np.random.default_rng(4).random((6, 64, 64)) * 255).astype(np.uint8)
    features, _ = _volume_features(tiny_sam2, volume)
    seed = np.zeros((64, 64), bool)
    seed[20:40, 20:40] = True
    with pytest.raises(StoppedError):
        propagate(SamPredictor(tiny_sam2), features, {2: seed}, should_stop=lambda: True)
