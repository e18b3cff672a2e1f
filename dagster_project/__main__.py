from dagster_project.cli import app

app(prog_name="meterhouse")
