"""`python -m trainer_service …`: the command line (`trainer_service.cli.commands`)."""

from trainer_service.cli.commands import main

raise SystemExit(main())
