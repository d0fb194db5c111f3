"""The paper (Tensmeyer & Martinez 2017) re-run: transforms, training, measurements, tables, figures, CLI."""
