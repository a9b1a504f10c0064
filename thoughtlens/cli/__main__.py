from thoughtlens.cli import app

app()
