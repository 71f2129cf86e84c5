"""Knowledge distillation: the student's loss against the labels and the teacher's logits."""

from __future__ import annotations

from trigger.training.fit import N_CLASSES


def distillation_loss(temperature: float, alpha: float, distill: bool):
    """Hard-label cross-entropy, mixed with the KL divergence to the teacher's softened logits.

    `y_true` is the one-hot label, followed by the teacher's logits when distilling:
    loss = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).
    The T^2 keeps the soft-gradient scale independent of T (Hinton et al. 2015).
    """
    import tensorflow as tf

    def loss(y_true, logits):
        labels = y_true[:, :N_CLASSES]
        hard = tf.keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
        if not distill:
            return hard
        log_t = tf.nn.log_softmax(y_true[:, N_CLASSES:] / temperature)
        log_s = tf.nn.log_softmax(logits / temperature)
        kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1)
        return (1.0 - alpha) * hard + alpha * temperature**2 * kl

    loss.__name__ = "distillation_loss" if distill else "crossentropy"
    return loss
