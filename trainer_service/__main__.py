"""`python -m trainer_service …`: the command line (`trainer_service.cli.commands`)."""

import sys

from trainer_service.cli.commands import main

sys.exit(main())
