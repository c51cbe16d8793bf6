"""Network in Network (Lin, Chen & Yan, 2013) as in d2l / notes 000."""

from __future__ import annotations

from torch import nn

from convzoo.models._base import ConvNet
from convzoo.models._registry import FAST_WITHOUT_BATCH_NORM, D2LRecipe, ReportPlan, register_model

__all__ = ["NiN", "nin_block"]

LIN_2013 = "Lin, Chen & Yan, Network In Network"


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    """A convolution followed by two 1x1 convolutions (a per-pixel MLP), each with ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )


class NiN(ConvNet):
    """NiN: four ``nin_block``s, the last with one channel per class, then global average pooling
    (Lin et al., 2013). No dense layers at all."""

    def __init__(self, *, model_name: str, in_channels: int, num_classes: int) -> None:
        super().__init__(model_name=model_name, in_channels=in_channels, num_classes=num_classes, default_size=224)
        self.features = nn.Sequential(
            nin_block(in_channels, 96, kernel_size=11, stride=4, padding=0),  # B x 96 x 54 x 54
            nn.MaxPool2d(3, stride=2),  # B x 96 x 26 x 26
            nin_block(96, 256, kernel_size=5, stride=1, padding=2),
            nn.MaxPool2d(3, stride=2),  # B x 256 x 12 x 12
            nin_block(256, 384, kernel_size=3, stride=1, padding=1),
            nn.MaxPool2d(3, stride=2),  # B x 384 x 5 x 5
            nn.Dropout(0.5),
        )
        self.head = nn.Sequential(
            nin_block(384, num_classes, kernel_size=3, stride=1, padding=1),  # B x classes x 5 x 5
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),  # B x classes
        )


# its logits come out of a ReLU: He init alone leaves some classes at 0 for every image, never trained, so the
# report starts it with --init kaiming-identity (docs/benchmarks.md, the zoo table's NiN);
# d2l's accuracy is the mean of the two builds of d2l_results.md, as 3 of its 26 builds were stuck at chance;
# on a CPU the report trains it at 72x72: it takes 67 at the least, and 72 still reaches about d2l's accuracy
@register_model(paper=LIN_2013, year=2013, num_params=1_992_166, input_size=(1, 224, 224), min_side=67,
                notes="000", d2l=D2LRecipe(table_row=4, resize=224, batch_size=128, lr=0.1, test_acc=0.7875),
                report=ReportPlan(cpu_side=72, fast_overrides={**FAST_WITHOUT_BATCH_NORM, "init": "kaiming-identity"}))
def nin(*, num_classes: int = 10, in_channels: int = 1) -> NiN:
    """d2l's NiN for 1x224x224 Fashion-MNIST."""
    return NiN(model_name="nin", in_channels=in_channels, num_classes=num_classes)
