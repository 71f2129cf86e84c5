"""Stage 2, training: the teacher, the float reference and the compressed student.

    fit.py       one `model.fit` from a recipe section (FitSettings), seeding, evaluation, saving
    teacher.py   the float teacher: training, its cache keyed on data + teacher section
    pruning.py   magnitude pruning: the schedule, wrapping and stripping, measured sparsity
    distill.py   the distillation loss, the teacher's view of the jets, mirrored batches
    student.py   the float reference and the student (QAT, pruning, distillation)
    stage.py     `train_and_compress`: the run directory, sealed with `train_sources`

Heavy imports (TensorFlow) stay inside the functions: importing a module here is cheap.
"""
