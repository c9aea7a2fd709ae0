"""PyTorch modules of fedsim's network presets (docs/networks.md).

Written from ../shared/MODELS.md with the module names of the presets'
sources, so that state_dict() keys and order are fedsim's parameter layout.
Used by tools/torch_state.py (model.bin <-> state_dict) and by
tools/nn_reference/make_fixtures.py (the PyTorch parity fixtures).
"""
import torch
from torch import nn


class FedAuCnn(nn.Module):
    """FedAU's CNNs: conv block, fc1 block, fc2 (model/cnn_*.py)."""

    def __init__(self, channels, side, hidden):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.flat = 32 * (side // 4) * (side // 4)
        layers = []
        width = self.flat
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.fc1 = nn.Sequential(*layers)
        self.fc2 = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc2(self.fc1(self.conv(x).reshape(-1, self.flat)))


class FedFixCnn(nn.Module):
    """FedFix's CNN_CIFAR_dropout (conv3 has no ReLU)."""

    def __init__(self, p=0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.fc1 = nn.Linear(4 * 4 * 64, 64)
        self.fc2 = nn.Linear(64, 10)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        x = self.dropout(nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2, 2))
        x = self.dropout(nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2, 2))
        x = self.dropout(self.conv3(x)).reshape(-1, 4 * 4 * 64)
        return self.fc2(torch.relu(self.fc1(x)))


class FedFixLstm(nn.Module):
    """FedFix's LSTM_Shakespeare: the fc reads the last step."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.lstm = nn.LSTM(8, 100, 2, batch_first=True)
        self.fc = nn.Linear(100, 100)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.fc(out[:, -1])


class LeafCnn(nn.Module):
    """LEAF's FEMNIST CNN, with "same" padding."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(3136, 2048)
        self.fc2 = nn.Linear(2048, 62)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.reshape(-1, 3136))))


# name -> (constructor, input shape of one example, token vocabulary or 0)
PRESETS = {
    "fedau_cnn_mnist": (lambda: FedAuCnn(1, 28, [128]), (1, 28, 28), 0),
    "fedau_cnn_svhn": (lambda: FedAuCnn(3, 32, [128]), (3, 32, 32), 0),
    "fedau_cnn_cifar10": (lambda: FedAuCnn(3, 32, [256, 64]), (3, 32, 32), 0),
    "fedfix_cnn_cifar": (lambda: FedFixCnn(0.0), (3, 32, 32), 0),
    "fedfix_lstm_shakespeare": (FedFixLstm, (80,), 100),
    "leaf_cnn_femnist": (LeafCnn, (1, 28, 28), 0),
}


def make(name):
    """The module of preset `name`."""
    return PRESETS[name][0]()
