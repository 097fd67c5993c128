from wfboost.cli import main

raise SystemExit(main())
