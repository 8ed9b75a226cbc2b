"""One config's net: ``make_net`` and the skorch net class (net), the model kinds (models), heads and
losses, callbacks, learning-rate schedules, augmentation and seeds.
"""
