import pytest
import torch

from napari_sam_peft.core.errors import DeviceNotAvailableError
from napari_sam_peft.core.sam.devices import available_devices, select_device


def test_auto_picks_the_best_available_device():
    assert select_device().type == available_devices()[0]
    assert select_device("auto").type == available_devices()[0]


def test_cpu_override_is_always_honoured():
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu_says_what_to_choose_instead():
    with pytest.raises(DeviceNotAvailableError, match="Choose 'cpu' or 'auto'"):
        select_device("cuda")


def test_nonsense_device_lists_the_choices():
    with pytest.raises(DeviceNotAvailableError, match="auto, cuda, mps, cpu"):
        select_device("gpu-please")
