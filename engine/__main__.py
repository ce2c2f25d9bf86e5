import sys
from engine.cli.main import main_quietly_on_a_closed_stdout
sys.exit(main_quietly_on_a_closed_stdout())
