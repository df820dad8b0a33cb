from sfumato.cli import main

raise SystemExit(main())
