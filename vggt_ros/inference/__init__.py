"""Running the VGGT network on camera images: the ``Predictor`` the pipeline calls.

``builder`` turns user settings into a predictor, ``device`` resolves where and in which
precision it runs, ``preprocessing`` reproduces the official image preparation and
``predictor`` runs the network. Import the modules directly: keeping this file empty lets
``preprocessing`` be used without loading the model code.
"""
