import sys

from mmsa.cli import main

sys.exit(main())
