"""A network of your own for hpsearch: any torch.nn.Module built as

    Class(image_shape=(C, H, W), n_classes=K, **params)

whose forward takes images (n, C, H, W) in [0, 1] and returns logits (n, K). The space names it as
model = "mynets:SmallCNN"; its other constructor arguments (width, depth, dropout) are the space's
words, searched like any other.
"""

from torch import nn


class SmallCNN(nn.Module):
    """``depth`` blocks of a 3x3 convolution of ``width`` channels, ReLU and a 2x2 max-pool, then
    dropout and one linear layer."""

    def __init__(self, image_shape, n_classes, width=16, depth=2, dropout=0.0):
        super().__init__()
        channels, height, width_px = image_shape
        layers = []
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, height, width_px = width, height // 2, width_px // 2
        if height < 1 or width_px < 1:
            raise ValueError(f"depth {depth} pools {image_shape[1]}x{image_shape[2]} images to nothing")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(width * height * width_px, n_classes))

    def forward(self, x):
        return self.head(self.features(x))
