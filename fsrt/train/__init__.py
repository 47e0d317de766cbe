"""The compact AMP trainer behind ``fsrt train`` (recipes, data, schedule, loss, EMA,
checkpoints, DDP and the loop); see ``fsrt.train.loop.train``."""
