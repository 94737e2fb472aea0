"""Training with semir's own kernels, and the paper's synthetic tasks (issue 7).

``train`` runs minibatch SGD or Adam on the cross-entropy of a program that outputs logits, with gradients
from the compiled sum_product kernel with respect to the parameters; a hook can compute any semiring
statistic on held-out examples every N steps.
"""

from .loop import TrainResult, accuracy, cross_entropy_program, load_checkpoint, predict, semiring_hook, train
from .optim import SGD, Adam
from .tasks import TASKS, Task, four_features, make_task

__all__ = ["SGD", "TASKS", "Adam", "Task", "TrainResult", "accuracy", "cross_entropy_program", "four_features",
           "load_checkpoint", "make_task", "predict", "semiring_hook", "train"]
